"""iw-SFT and DPO end to end on the tiny model: reference log-probs scored by verl's engine, then training
through ``dft train``, with the stored references shifted so that the first step's loss has a known value."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import FP32, check_ok, compose_config, read_log, run_module, tiny_overrides

from dft.train.columns import ref_column
from dft.train.ref_scoring import step_rows
from dft.train.run_record import claim_run

ROWS_PER_STEP = 64


def score(tiny, data, output, log):
    args = ["preset=tiny-cpu", f"model.path={tiny.model_dir}", f"data.train_files={data}", f"ref.output={output}",
            f"ref.rows_per_step={ROWS_PER_STEP}", *FP32]  # fmt: skip
    check_ok(run_module("ref_logprobs", args, log, nproc=2))
    assert list(output.parent.glob(f"{output.name}.logs/*/.hydra/config.yaml")), "Hydra's folder beside ref.output"
    return pd.read_parquet(output)


@pytest.fixture(scope="module")
def scored(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("scored")
    return root, score(tiny, tiny.train_parquet, root / "train.ref.parquet", root / "score.log")


def float64_target_log_probs(tiny, rows):
    """Target-token log-probs of the first rows by the HF model in float64, tokenised by verl's dataset."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

    cfg = compose_config(["preset=tiny-cpu", f"model.path={tiny.model_dir}"])
    dataset = MultiTurnSFTDataset(str(tiny.train_parquet), AutoTokenizer.from_pretrained(tiny.model_dir), cfg.data)
    model = AutoModelForCausalLM.from_pretrained(tiny.model_dir, dtype=torch.float64, attn_implementation="eager")
    out = []
    with torch.no_grad():
        for row in range(rows):
            item = dataset[row]
            log_probs = torch.log_softmax(model(item["input_ids"][None]).logits[0, :-1], dim=-1)
            token_lp = log_probs.gather(-1, item["input_ids"][1:, None]).squeeze(-1)
            out.append(token_lp[item["loss_mask"][1:].bool()].numpy())
    return out


def test_reference_log_probs_match_a_float64_model(tiny, scored):
    _, frame = scored
    for stored, expected in zip(frame[ref_column()][:6], float64_target_log_probs(tiny, 6)):
        assert len(stored) == len(expected)
        np.testing.assert_allclose(stored, expected, atol=2e-5)
    assert len(frame) == 256 and list(frame.columns[:3]) == ["messages", "id", "gold"]


def test_data_smaller_than_a_training_batch_is_scored(tiny, tmp_path):
    few = tmp_path / "few.parquet"
    pd.read_parquet(tiny.train_parquet).head(5).to_parquet(few, index=False)  # tiny-cpu's batch is 32
    args = ["preset=tiny-cpu", f"model.path={tiny.model_dir}", f"data.train_files={few}",
            f"ref.output={tmp_path / 'few.ref.parquet'}", "ref.rows_per_step=4"]  # fmt: skip
    check_ok(run_module("ref_logprobs", args, tmp_path / "score.log", nproc=2))
    assert len(pd.read_parquet(tmp_path / "few.ref.parquet")[ref_column()]) == 5


def test_scoring_resumes_without_redoing_finished_steps(tiny, scored, tmp_path):
    _, frame = scored
    output = tmp_path / "train.ref.parquet"
    parts = tmp_path / "train.ref.parquet.parts"
    made = ["preset=tiny-cpu", f"model.path={tiny.model_dir}", f"data.train_files={tiny.train_parquet}"]
    claim_run(compose_config([*made, f"ref.output={output}"]), scoring=True)  # a scoring of these rows made the parts
    sentinel = {}
    for rank in range(2):
        first_step = step_rows(len(frame), ROWS_PER_STEP, 2, rank)[0]
        lines = []
        for row in first_step:
            sentinel[row] = [-0.5] * len(frame[ref_column()][row])
            lines.append(json.dumps({"id": row, "sample": 0, "log_probs": sentinel[row]}))
        (parts / f"rank{rank}.jsonl").write_text("\n".join(lines) + '\n{"id": 40, "sam')  # torn last line
    resumed = score(tiny, tiny.train_parquet, output, tmp_path / "score.log")
    for row in range(len(frame)):
        if row in sentinel:
            assert list(resumed[ref_column()][row]) == sentinel[row], row  # finished step kept, not recomputed
        else:
            np.testing.assert_allclose(resumed[ref_column()][row], frame[ref_column()][row], atol=1e-6)
    assert not parts.exists()


def first_step(tiny, run_dir, data, loss_args):
    args = tiny_overrides(tiny, run_dir, steps=1) + [f"data.train_files={data}", "data.val_files=null", *FP32]
    check_ok(run_module("train", args + loss_args, run_dir / "log.jsonl", nproc=2))
    return read_log(run_dir / "log.jsonl")[1]


@pytest.mark.parametrize(
    "level, shift, weight",
    [("sequence", math.log(2), 0.5), ("token", -math.log(40), 1.8)],
)
def test_iw_sft_first_step_is_the_clipped_weight_times_cross_entropy(tiny, scored, tmp_path, level, shift, weight):
    root, frame = scored
    shifted = frame.assign(**{ref_column(): [np.asarray(v) + shift for v in frame[ref_column()]]})
    data = tmp_path / "shifted.parquet"
    shifted.to_parquet(data, index=False)
    step1 = first_step(tiny, tmp_path, data, ["loss.name=iw_sft", f"loss.iw_level={level}"])
    # the policy is the reference shifted by -shift per token, so every weight is exp(-shift), clipped
    assert math.isclose(step1["train/loss"], weight * step1["train/nll"], rel_tol=1e-4), step1
    assert math.isclose(step1["train/iw_weight"], weight, rel_tol=1e-4), step1


@pytest.fixture(scope="module")
def scored_pairs(tiny, tmp_path_factory):
    """Each problem's own solution is chosen, the next problem's is rejected; scored by the tiny model."""
    root = tmp_path_factory.mktemp("pairs")
    messages = [list(m) for m in pd.read_parquet(tiny.train_parquet)["messages"]]
    pairs = [
        {"prompt": [dict(m[0])], "chosen": [dict(m[1])], "rejected": [dict(messages[(i + 1) % len(messages)][1])]}
        for i, m in enumerate(messages)
    ]
    pd.DataFrame(pairs).to_parquet(root / "pairs.parquet", index=False)
    frame = score(tiny, root / "pairs.parquet", root / "pairs.ref.parquet", root / "score.log")
    assert [list(frame[side][0]) for side in ("prompt", "chosen")] == [messages[0][:1], messages[0][1:]]
    return frame


@pytest.mark.parametrize(
    "batching", [["data.use_dynamic_bsz=True"], ["data.use_dynamic_bsz=False", "data.micro_batch_size_per_gpu=3"]]
)
def test_dpo_first_step_follows_the_pairs_in_the_batch(tiny, scored_pairs, tmp_path, batching):
    frame = scored_pairs
    # the reference finds every chosen token 0.1 nats less likely than the policy does
    shifted = frame.assign(chosen_ref_log_probs=[np.asarray(v) - 0.1 for v in frame["chosen_ref_log_probs"]])
    shifted.to_parquet(tmp_path / "shifted.parquet", index=False)
    args = ["loss.name=dpo", "loss.dpo_beta=0.2", "data.train_batch_size=12", *batching]
    step1 = first_step(tiny, tmp_path, tmp_path / "shifted.parquet", args)
    # verl's DistributedSampler (seed 0, epoch 0) puts the first 12 indices of randperm in the first batch
    first = torch.randperm(len(frame), generator=torch.Generator().manual_seed(0)).tolist()[:12]
    margins = [0.2 * 0.1 * len(frame["chosen_ref_log_probs"][i]) for i in first]
    expected = sum(math.log1p(math.exp(-m)) for m in margins) / len(margins)
    assert math.isclose(step1["train/loss"], expected, rel_tol=1e-4), (step1, expected)
    assert math.isclose(step1["dpo/reward_margin"], sum(margins) / len(margins), rel_tol=1e-3)
    assert step1["dpo/accuracy"] == 1.0


@pytest.mark.parametrize("loss, missing", [("iw_sft", "['ref_log_probs']"), ("dpo", "['prompt', 'chosen'")])
def test_reference_losses_on_unscored_data_name_the_file_and_the_command(tiny, loss, missing):
    from dft.train.config import prepare_config

    overrides = ["preset=tiny-cpu", f"model.path={tiny.model_dir}", f"data.train_files={tiny.train_parquet}",
                 "data.val_files=null", f"loss.name={loss}"]  # fmt: skip
    cfg = compose_config(overrides)
    with pytest.raises(ValueError) as error:
        prepare_config(cfg)
    message = str(error.value)
    assert str(tiny.train_parquet) in message and missing in message and "python -m dft ref_logprobs" in message
