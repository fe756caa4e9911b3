"""dft.train and dft.train_ray end to end through verl's real engine (FSDP2, gloo) on 2 CPU processes."""

import math
import shutil

from conftest import check_ok, read_log, run_module, tiny_overrides


def test_dft_trains_saves_and_resumes_without_losing_a_step(tiny, tmp_path):
    full = tmp_path / "full"
    result = run_module("dft.train", tiny_overrides(tiny, full, steps=6) + ["trainer.save_freq=3"],
                        full / "log.jsonl", nproc=2)
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
    result = run_module("dft.train", tiny_overrides(tiny, resumed, steps=6) + ["trainer.save_freq=3"],
                        resumed / "log.jsonl", nproc=2)
    check_ok(result)
    again = read_log(resumed / "log.jsonl")
    assert sorted(k for k in again if "train/loss" in again[k]) == [4, 5, 6]
    for step in (4, 5, 6):
        for key in ("train/loss", "train/nll", "train/lr"):
            assert math.isclose(again[step][key], log[step][key], rel_tol=1e-5), (step, key)


def test_ray_entry_point_trains_on_a_local_cluster(tiny, tmp_path):
    args = tiny_overrides(tiny, tmp_path, steps=2) + ["trainer.n_gpus_per_node=2", "loss.name=sft"]
    result = run_module("dft.train_ray", args, tmp_path / "log.jsonl")
    check_ok(result)
    log = read_log(tmp_path / "log.jsonl")
    assert all(math.isfinite(log[step]["train/loss"]) for step in (1, 2))
    # SFT's loss is the NLL itself
    assert math.isclose(log[1]["train/loss"], log[1]["train/nll"], rel_tol=1e-3)
