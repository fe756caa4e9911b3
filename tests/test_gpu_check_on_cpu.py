"""The GPU check (benchmarks/gpu/check.py) in its CPU dry run: the same code as on the GPU machine, verl imported
without Ray, tiny shapes. It must write its report, and its unfused and fused paths must take the same steps."""

import json
import re
import subprocess
import sys

import pytest
from conftest import REPO, check_ok

from dft.models.cards import load_card


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    config = load_card("qwen2.5-math-1.5b").path / "config.json"
    cmd = [sys.executable, "benchmarks/gpu/check.py", "--dry-run", "--out", str(out), "--config", str(config)]
    check_ok(subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1200))
    return (out / "gpu_check.md").read_text(), json.loads((out / "gpu_check.json").read_text())


def test_dry_run_reports_every_path_without_ray(report):
    text, _ = report
    assert "Ray: a stand-in module (not installed)" in text and "Ray calls after import: 0" in text
    for path in ("head-original", "head-dft", "fused-dft"):
        assert re.search(rf"\| 512 \| {path} \| [\d.]+ \| [\d.]+ \| [\d.]+ \|", text), path
    assert "| 512 | triton-dft | 0.00 | not run: Triton needs CUDA |" in text
    for path in ("unfused", "fused-torch"):
        assert re.search(rf"\| {path} \| [\d.]+ \| [\d.]+ \|", text), path


def test_dry_run_fused_and_unfused_take_the_same_steps(report):
    _, results = report
    runs = {run["path"]: run["steps"] for run in results["steps"] if "steps" in run}
    unfused, fused = runs["unfused"], runs["fused-torch"]
    assert [s["loss_name"] for s in fused[:2]] == ["sft", "dft"]
    for step in range(len(unfused)):  # fp32 in the dry run: the same model, batch and updates
        for key in ("loss", "grad_norm"):
            assert fused[step][key] == pytest.approx(unfused[step][key], rel=1e-4), (step, key)
    losses = {row["path"]: row["loss"] for row in results["loss_paths"] if row["tokens"] == 512 and "loss" in row}
    assert losses["fused-dft"] == pytest.approx(losses["head-dft"], rel=1e-2)  # bf16 logits
