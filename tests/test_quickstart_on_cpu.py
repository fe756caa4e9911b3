"""The quickstart end to end at a few steps: training through verl, evaluation through the harness."""

import json
import subprocess
import sys

import pytest
from conftest import REPO, check_ok, run_module

from dft.cli.quickstart import main as quickstart
from dft.cli.quickstart import table1 as qs
from dft.cli.quickstart.table3 import train_online
from dft.eval.grading import grade

N_TEST = 64


def quickstart_args(out):
    return ["--out", str(out), "--pretrain-steps", "6", "--steps", "4", "--n-train", "512", "--n-test", str(N_TEST)]


def run_quickstart(out):
    """README command 1 as a user runs it: a fresh interpreter, its stages through real torchrun processes."""
    cmd = [sys.executable, "-m", "dft", "quickstart", *quickstart_args(out)]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result.stdout


def test_quickstart_prints_the_table_writes_results_and_reuses_finished_runs(tmp_path):
    out = tmp_path / "qs"
    stdout = run_quickstart(out)
    for row in ("| Base |", "| SFT |", "| DFT |"):
        assert row in stdout.replace("**", "")
    summary = json.loads((out / "results.json").read_text())
    assert (summary["sampling"]["decoding"], summary["sampling"]["n"], summary["sampling"]["temperature"]) == (
        "greedy",
        1,
        0.0,
    )
    assert summary["commit"] and summary["train"]["overrides"]["DFT"]
    assert (
        summary["train"]["final_metrics"]["DFT"]["train/loss"] < summary["train"]["final_metrics"]["DFT"]["train/nll"]
    )
    for row, result in summary["results"].items():
        lines = [json.loads(line) for line in (out / f"eval_{row.lower()}.jsonl").read_text().splitlines()]
        assert len(lines) == result["problems"] == N_TEST
        # each verdict re-derived from the saved response agrees, and the accuracy is their mean
        assert all(line["correct"] == grade(line["response"], line["gold"]).correct for line in lines)
        assert result["avg@1"] == sum(line["correct"] for line in lines) / N_TEST

    trained = {row: (out / row / "train.log").stat().st_mtime for row in ("base", "sft", "dft")}
    check_ok(run_module("quickstart", quickstart_args(out)))  # forked: a run that reuses needs no interpreter
    assert {row: (out / row / "train.log").stat().st_mtime for row in trained} == trained


def finished_run(run_dir, overrides, steps):
    """A run folder as dft train leaves it after ``steps`` steps (only what the quickstart looks at)."""
    hf_dir = run_dir / "ckpt" / f"global_step_{steps}" / "huggingface"
    hf_dir.mkdir(parents=True)
    (hf_dir / "model.safetensors").write_bytes(b"")
    qs.claim_run_dir(run_dir, overrides)
    return hf_dir


def test_a_finished_run_is_reused_only_by_the_command_that_made_it_wherever_its_folder_moved(tmp_path):
    run_dir = tmp_path / "sft"
    overrides = qs.train_overrides(tmp_path / "base", tmp_path / "ft.parquet", tmp_path / "val.parquet", "sft",
                                   1e-3, run_dir, 4, 2)  # fmt: skip
    finished_run(run_dir, overrides, 4)
    moved = tmp_path / "moved" / "sft"
    moved.parent.mkdir()
    run_dir.rename(moved)
    same = qs.train_overrides(tmp_path / "base", tmp_path / "ft.parquet", tmp_path / "val.parquet", "sft", 1e-3,
                              moved, 4, 2)  # fmt: skip
    for _ in range(2):  # each run again reuses it, as the first did
        assert qs.train(same, moved, 4, "SFT") == moved / "ckpt" / "global_step_4" / "huggingface"  # nothing launched
    other_base = [o.replace(str(tmp_path / "base"), str(tmp_path / "other")) for o in same]
    with pytest.raises(SystemExit) as refused:
        qs.train(other_base, moved, 4, "SFT")
    message = str(refused.value)
    assert f"{moved} holds results of a different run" in message
    assert f'model.path: "{tmp_path / "base"}" in the folder, "{tmp_path / "other"}" now' in message


def test_an_online_run_refuses_another_base_before_starting_verl(tmp_path):
    run_dir = tmp_path / "grpo"
    qs.claim_run_dir(run_dir, ["ALGO=grpo", f"MODEL={tmp_path / 'base'}", f"DATA_DIR={tmp_path / 'rl'}"])
    with pytest.raises(SystemExit, match=rf'MODEL: "{tmp_path / "base"}" in the folder, "{tmp_path / "other"}" now'):
        train_online("grpo", tmp_path / "other", tmp_path / "rl", run_dir, 2, 1e-4)


def test_table3_on_a_given_base_refuses_a_folder_of_runs_fine_tuned_from_another(tmp_path):
    out = tmp_path / "qs"
    qs.claim_run_dir(out / "sft", ["model.path=a Base pretrained by Table 1"])
    table3 = ["table3", "--out", str(out), "--base", str(tmp_path / "base"), "--n-test", "8"]
    with pytest.raises(SystemExit, match=rf"{out / 'sft'} holds results of a different run"):
        quickstart.main([*table3, "--n-train", "64"])
    with pytest.raises(SystemExit, match=rf"{out / 'tiny'} holds results of a different run"):
        quickstart.main([*table3, "--n-train", "128"])
