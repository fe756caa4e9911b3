"""What a new user runs into, handled: a non-finite loss, rows without a loss token, a finished run started again;
and setting=paper end to end through verl's engine, against the official formula."""

import math
import shutil

import pandas as pd
from conftest import check_ok, read_log, run_module, tiny_overrides


def poisoned_copy(model_dir, out):
    """The tiny model with one NaN in its final norm: every logit, and so the loss, is NaN."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(model_dir, out)
    weights = load_file(out / "model.safetensors")
    weights["model.norm.weight"][0] = float("nan")
    save_file(weights, out / "model.safetensors", metadata={"format": "pt"})
    return out


def test_a_non_finite_loss_stops_the_run_naming_the_step_and_writes_no_checkpoint(tiny, tmp_path):
    model = poisoned_copy(tiny.model_dir, tmp_path / "model")
    args = tiny_overrides(tiny, tmp_path, steps=3) + [f"model.path={model}", "trainer.save_freq=1"]
    result = run_module("train", args, tmp_path / "log.jsonl", nproc=1)
    assert result.returncode != 0
    assert "NonFiniteLoss: step 1: train/loss is nan" in result.stderr
    assert "stopping before the next optimizer step, without a checkpoint of these weights" in result.stderr
    assert not list((tmp_path / "ckpt").glob("global_step_*"))


def with_rows_lacking_loss_tokens(parquet, out, rows):
    """A copy of a training file where ``rows`` have no assistant turn or a prompt longer than 256 tokens."""
    frame = pd.read_parquet(parquet)
    messages = [list(m) for m in frame.messages]
    for k, row in enumerate(rows):
        user = dict(messages[row][0])
        if k % 2:
            user["content"] = "three " * 300
        messages[row] = [user] if k % 2 == 0 else [user, dict(messages[row][1])]
    frame["messages"] = messages
    frame.to_parquet(out, index=False)
    return out


def test_rows_without_loss_tokens_are_counted_and_a_finished_run_started_again_trains_nothing(tiny, tmp_path):
    train = with_rows_lacking_loss_tokens(tiny.train_parquet, tmp_path / "train.parquet", [3, 7])
    # 3 steps of 32 rows: the run ends in the middle of its 8-step epoch
    args = tiny_overrides(tiny, tmp_path, steps=3) + [f"data.train_files={train}", "checkpoint.save_contents=[model]"]
    first = run_module("train", args, tmp_path / "log.jsonl", nproc=1)
    check_ok(first)
    assert "2 of 256 rows have no loss token within data.max_length=256 (rows 3, 7)" in first.stdout
    assert sorted(step for step, row in read_log(tmp_path / "log.jsonl").items() if "train/loss" in row) == [1, 2, 3]

    again = run_module("train", args, tmp_path / "again.jsonl", nproc=1)
    check_ok(again)
    assert f"{tmp_path / 'ckpt'} holds step 3 of 3: nothing to train" in again.stdout
    assert not (tmp_path / "again.jsonl").exists() or not read_log(tmp_path / "again.jsonl")
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("global_step_*")) == ["global_step_3"]


def test_data_where_no_row_has_a_loss_token_is_refused_before_training(tiny, tmp_path):
    train = with_rows_lacking_loss_tokens(tiny.train_parquet, tmp_path / "train.parquet", range(256))
    args = tiny_overrides(tiny, tmp_path, steps=1) + [f"data.train_files={train}"]
    result = run_module("train", args, tmp_path / "log.jsonl", nproc=1)
    assert result.returncode != 0
    assert "no row has a loss token within data.max_length=256" in result.stderr


def test_setting_paper_trains_the_official_format_with_the_official_objective(tiny, tmp_path):
    # the home-made tiny model, for speed (bf16 on a CPU is slow with a real 128k vocabulary); the official format
    # with the real tokenizers, chat template or none: test_formats_on_cpu
    from test_normalization_on_cpu import dft_step_reference
    from transformers import AutoTokenizer

    from dft.data.prep import Example, write_parquet
    from dft.train.sft_datasets import OfficialFormatDataset

    rows = [Example(r["problem"], r["solution"], r["gold"], "tiny", r["id"]) for r in tiny.train_records[:64]]
    write_parquet(rows, str(tmp_path / "train.parquet"), "official")
    args = ["preset=tiny-cpu", "setting=paper", f"model.path={tiny.model_dir}", "data.train_batch_size=16",
            f"data.train_files={tmp_path / 'train.parquet'}", "trainer.total_training_steps=1",
            f"trainer.default_local_dir={tmp_path}/ckpt", "trainer.logger=[console,file]",
            "checkpoint.save_contents=[model]"]  # fmt: skip
    result = run_module("train", args, tmp_path / "log.jsonl", nproc=2)
    check_ok(result)
    assert "model.use_liger=False (liger-kernel is not installed)" in result.stdout
    step = read_log(tmp_path / "log.jsonl")[1]
    # 16 rows on 2 ranks in micro-batches of 4: the official formula; bf16 master weights and compute, so within 2%
    config = {"max_length": 256, "truncation": "right", "pad_mode": "no_padding"}
    dataset = OfficialFormatDataset(
        str(tmp_path / "train.parquet"), AutoTokenizer.from_pretrained(tiny.model_dir), config
    )
    loss, norm = dft_step_reference(tiny.model_dir, dataset, 16, "official", 2, 4)
    assert math.isclose(step["train/loss"], loss, rel_tol=0.02), (step["train/loss"], loss)
    assert math.isclose(step["train/grad_norm"], norm, rel_tol=0.05), (step["train/grad_norm"], norm)
    # the same file is refused under the chat format, before any model loads
    refused = run_module("train", [*args, "data.format=chat"], tmp_path / "chat.jsonl", nproc=1)
    assert refused.returncode != 0
    assert "was prepared in the 'official' format, but data.format=chat" in refused.stderr
