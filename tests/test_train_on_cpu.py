"""dft train and dft.train.launch end to end through verl's real engine (FSDP2, gloo) on 2 CPU processes."""

import math
import shutil

from conftest import FP32, check_ok, compose_config, read_log, run_module, tiny_overrides


def test_dft_trains_saves_and_resumes_without_losing_a_step(tiny, tmp_path):
    full = tmp_path / "full"
    result = run_module(
        "train", tiny_overrides(tiny, full, steps=6) + ["trainer.save_freq=3"], full / "log.jsonl", nproc=2
    )
    check_ok(result)
    log = read_log(full / "log.jsonl")
    losses = [log[step]["train/loss"] for step in range(1, 7)]
    nlls = [log[step]["train/nll"] for step in range(1, 7)]
    assert all(math.isfinite(x) for x in losses + nlls)
    assert nlls[-1] < nlls[0] - 0.05, f"cross-entropy did not fall: {nlls}"
    # DFT's loss is p-weighted NLL, so it sits below the NLL
    assert all(loss < nll for loss, nll in zip(losses, nlls))
    for step in (3, 6):
        assert (full / "ckpt" / f"global_step_{step}" / "huggingface" / "config.json").exists()

    # a run killed after step 3: only that checkpoint survives; starting again resumes from it
    resumed = tmp_path / "resumed"
    shutil.copytree(full / "ckpt" / "global_step_3", resumed / "ckpt" / "global_step_3")
    (resumed / "ckpt" / "latest_checkpointed_iteration.txt").write_text("3")
    shutil.copy(full / "ckpt" / "fingerprint.json", resumed / "ckpt")  # what made the run (dft.train.run_record)
    result = run_module(
        "train", tiny_overrides(tiny, resumed, steps=6) + ["trainer.save_freq=3"], resumed / "log.jsonl", nproc=2
    )
    check_ok(result)
    again = read_log(resumed / "log.jsonl")
    assert sorted(k for k in again if "train/loss" in again[k]) == [4, 5, 6]
    for step in (4, 5, 6):
        for key in ("train/loss", "train/nll", "train/lr"):
            assert math.isclose(again[step][key], log[step][key], rel_tol=1e-5), (step, key)


def test_ray_entry_point_trains_on_a_local_cluster(tiny, tmp_path):
    args = tiny_overrides(tiny, tmp_path, steps=2) + ["trainer.n_gpus_per_node=2", "loss.name=sft"]
    result = run_module("train_ray", args, tmp_path / "log.jsonl")
    check_ok(result)
    log = read_log(tmp_path / "log.jsonl")
    assert all(math.isfinite(log[step]["train/loss"]) for step in (1, 2))
    # SFT's loss is the NLL itself
    assert math.isclose(log[1]["train/loss"], log[1]["train/nll"], rel_tol=1e-3)


LAYOUTS = {
    "1 process": (1, ["model.use_remove_padding=False"]),
    "2 data-parallel processes": (2, ["model.use_remove_padding=False"]),
    "2 processes with remove-padding": (2, ["model.use_remove_padding=True"]),
}


def float64_reference_first_step(tiny, batch_size=32):
    """DFT loss and NLL of the first global batch, from the HF model in float64 (no verl engine involved).

    The batch is what verl's DistributedSampler draws first (seed 0, epoch 0: the first `batch_size` indices
    of randperm), tokenised by verl's dataset; every data-parallel split of it has the same global loss.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

    cfg = compose_config(["preset=tiny-cpu", f"model.path={tiny.model_dir}"])
    dataset = MultiTurnSFTDataset(str(tiny.train_parquet), AutoTokenizer.from_pretrained(tiny.model_dir), cfg.data)
    first = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0)).tolist()[:batch_size]
    model = AutoModelForCausalLM.from_pretrained(tiny.model_dir, dtype=torch.float64, attn_implementation="eager")
    dft_sum = nll_sum = count = 0.0
    with torch.no_grad():
        for index in first:
            item = dataset[index]
            log_probs = torch.log_softmax(model(item["input_ids"][None]).logits[0, :-1], dim=-1)
            token_lp = log_probs.gather(-1, item["input_ids"][1:, None]).squeeze(-1)
            mask = item["loss_mask"][1:].to(torch.float64)
            dft_sum += float((mask * token_lp.exp() * -token_lp).sum())
            nll_sum += float((mask * -token_lp).sum())
            count += float(mask.sum())
    return dft_sum / count, nll_sum / count


def test_engine_first_step_dft_matches_float64_reference_in_every_layout(tiny, tmp_path):
    ref_dft, ref_nll = float64_reference_first_step(tiny)
    assert ref_dft < ref_nll / 10  # a real DFT value, far from cross-entropy
    for number, (name, (nproc, layout)) in enumerate(LAYOUTS.items()):
        run_dir = tmp_path / f"layout{number}"
        result = run_module(
            "train", tiny_overrides(tiny, run_dir, steps=1) + FP32 + layout, run_dir / "log.jsonl", nproc=nproc
        )
        check_ok(result)
        step1 = read_log(run_dir / "log.jsonl")[1]
        assert math.isclose(step1["train/loss"], ref_dft, rel_tol=2e-5), (name, step1["train/loss"], ref_dft)
        assert math.isclose(step1["train/nll"], ref_nll, rel_tol=2e-5), (name, step1["train/nll"], ref_nll)


def test_sequence_parallel_without_flash_attention_is_refused_not_silently_wrong(tiny, tmp_path):
    args = tiny_overrides(tiny, tmp_path, steps=1) + [
        "model.use_remove_padding=True",
        "engine.ulysses_sequence_parallel_size=2",
    ]
    result = run_module("train", args, tmp_path / "log.jsonl", nproc=2)
    assert result.returncode != 0
    assert "engine.ulysses_sequence_parallel_size=2 needs flash-attention, but attention is 'sdpa'" in result.stderr
