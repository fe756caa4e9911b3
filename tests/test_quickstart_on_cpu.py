"""The quickstart end to end at a few steps: training through verl, evaluation through the harness."""

import json
import subprocess
import sys

from conftest import REPO

from dft.eval.grading import grade


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
        assert len(lines) == result["problems"] == 200
        # each verdict re-derived from the saved response agrees, and the accuracy is their mean
        assert all(line["correct"] == grade(line["response"], line["gold"]).correct for line in lines)
        assert result["avg@1"] == sum(line["correct"] for line in lines) / 200

    trained = {row: (out / row / "train.log").stat().st_mtime for row in ("base", "sft", "dft")}
    run_quickstart(out)
    assert {row: (out / row / "train.log").stat().st_mtime for row in trained} == trained
