"""The quickstart end to end at a few steps, and the minimal evaluator it uses."""

import json
import subprocess
import sys

import pytest
from conftest import REPO

from dft.quick_eval import is_correct, last_boxed


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so 3 + 4 = 7.\nThe answer is \\boxed{7}", "7"),
        ("\\boxed{1} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("no box here", None),
        ("unbalanced \\boxed{12", None),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


def test_is_correct_uses_math_equivalence_not_string_equality():
    assert is_correct("The answer is \\boxed{0.5}", "\\frac{1}{2}")
    assert is_correct("The answer is \\boxed{12}", "12")
    assert not is_correct("The answer is \\boxed{13}", "12")
    assert not is_correct("The answer is 12", "12")


def run_quickstart(out):
    cmd = [sys.executable, "-m", "dft.quickstart", "--out", str(out), "--pretrain-steps", "6", "--steps", "4"]
    cmd += ["--n-train", "512"]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result.stdout


def test_quickstart_prints_the_table_writes_results_and_reuses_finished_runs(tmp_path):
    out = tmp_path / "qs"
    stdout = run_quickstart(out)
    for row in ("| Base |", "| SFT |", "| DFT |"):
        assert row in stdout.replace("**", "")
    summary = json.loads((out / "results.json").read_text())
    assert summary["sampling"] == {"decoding": "greedy", "max_new_tokens": 64}
    assert summary["commit"] and summary["train"]["overrides"]["DFT"]
    assert (
        summary["train"]["final_metrics"]["DFT"]["train/loss"] < summary["train"]["final_metrics"]["DFT"]["train/nll"]
    )
    for row, result in summary["results"].items():
        lines = [json.loads(line) for line in (out / f"eval_{row.lower()}.jsonl").read_text().splitlines()]
        assert len(lines) == result["n"] == 200
        # each verdict re-derived from the saved response agrees, and the accuracy is their mean
        assert all(line["correct"] == is_correct(line["response"], line["answer"]) for line in lines)
        assert result["accuracy"] == sum(line["correct"] for line in lines) / 200

    trained = {row: (out / row / "train.log").stat().st_mtime for row in ("base", "sft", "dft")}
    run_quickstart(out)
    assert {row: (out / row / "train.log").stat().st_mtime for row in trained} == trained
