"""python -m dft eval end to end with the HF backend: the tiny model on all five benchmarks, kill and resume, Ray
replicas; a model-faithful tiny Qwen2.5-Math with the paper's prompt; folders that refuse another run's results."""

import json
import os
import signal
import subprocess
import sys
import time

from conftest import REPO, run_module

FIVE = "[math500,minerva_math,olympiadbench,aime24,amc23]"


def eval_args(tiny, out, *overrides):
    # the tiny model has no preset, so no paper prompt: it is evaluated in the chat format it was trained on
    return [f"model={tiny.model_dir}", f"out={out}", "prompt=chat-cot", "sampling.max_new_tokens=24",
            "grading.workers=1", *overrides]  # fmt: skip


def eval_command(tiny, out, *overrides):
    return [sys.executable, "-m", "dft", "eval", *eval_args(tiny, out, *overrides)]


def run_eval(tiny, out, *overrides, ok=True):
    result = run_module("eval", eval_args(tiny, out, *overrides))
    assert (result.returncode == 0) is ok, result.stdout[-3000:] + result.stderr[-5000:]
    return result.stdout if ok else result.stderr


def read_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_eval_covers_the_five_benchmarks_and_writes_responses_and_summary(tiny, tmp_path):
    stdout = run_eval(tiny, tmp_path, f"benchmarks={FIVE}", "limit=3", "sampling.n=2")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["benchmarks"]) == {"math500", "minerva_math", "olympiadbench", "aime24", "amc23"}
    assert summary["sampling"]["n"] == 2 and summary["prompt_template"] == "chat-cot" and summary["commit"]
    for name, metrics in summary["benchmarks"].items():
        rows = read_rows(tmp_path / f"{name}.jsonl")
        assert sorted((r["id"], r["sample"]) for r in rows) == sorted({(r["id"], s) for r in rows for s in (0, 1)})
        assert len(rows) == 6 == metrics["problems"] * metrics["samples_per_problem"]
        assert metrics["avg@2"] == sum(r["correct"] for r in rows) / 6
        assert f"{name}: avg@2 {100 * metrics['avg@2']:.1f}% (3 x 2)" in stdout
        assert all({"response", "finish", "stop", "extracted", "extracted_by", "correct", "error", "gold"} <= set(r)
                   for r in rows)  # fmt: skip
        assert metrics["truncated"] == sum(r["finish"] == "length" for r in rows) / 6
    assert summary["context"] == 512 and summary["stops"]["tokens"] == ["<|im_end|>", "<|endoftext|>"]
    assert set(summary["fingerprint"]["benchmarks"]) == set(summary["benchmarks"])


def test_a_killed_run_resumes_without_regenerating_or_duplicating(tiny, tmp_path):
    args = ("benchmarks=[aime24]", "limit=8", "sampling.n=3", "chunk_size=1")
    path = tmp_path / "aime24.jsonl"
    proc = subprocess.Popen(eval_command(tiny, tmp_path, *args), cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 300
    while time.time() < deadline and (not path.exists() or len(path.read_text().splitlines()) < 6):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the run and its grading workers, mid-flight
    proc.wait()
    before = {(r["id"], r["sample"]): r["response"] for r in read_rows(path)}
    assert 6 <= len(before) < 24, "the kill should land after some chunks and before the end"

    run_eval(tiny, tmp_path, *args)
    after = read_rows(path)
    keys = [(r["id"], r["sample"]) for r in after]
    assert len(keys) == len(set(keys)) == 24  # no duplicates, no gaps
    assert {k: r["response"] for k, r in zip(keys, after) if k in before} == before  # nothing regenerated
    assert json.loads((tmp_path / "summary.json").read_text())["benchmarks"]["aime24"]["problems"] == 8


def test_ray_data_parallel_replicas_give_every_problem_its_samples(tiny, tmp_path):
    # a real process: Ray's driver is not forked from the tests' process
    cmd = eval_command(tiny, tmp_path, "benchmarks=[amc23]", "limit=4", "sampling.n=2", "data_parallel=2")
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    rows = read_rows(tmp_path / "amc23.jsonl")
    assert sorted((r["id"], r["sample"]) for r in rows) == sorted({(r["id"], s) for r in rows for s in (0, 1)})
    assert len(rows) == 8


def test_paper_prompt_for_a_faithful_qwen_and_a_folder_that_refuses_another_model(tiny, faithful_tiny, tmp_path):
    qwen = faithful_tiny("qwen2.5-math-1.5b")
    args = ("benchmarks=[amc23]", "limit=2", "sampling.n=2", "sampling.max_new_tokens=8")
    result = run_module("eval", [f"model={qwen}", f"out={tmp_path}", "grading.workers=1", *args])
    assert result.returncode == 0, result.stderr[-5000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["prompt_template"] == "qwen-boxed" and summary["context"] == 4096  # prompt=auto, from the preset
    assert summary["stops"]["token_ids"] == [151643, 151645]
    rows = read_rows(tmp_path / "amc23.jsonl")
    assert all(r["finish"] in ("stop", "length") and "<|im_end|>" not in r["response"] for r in rows)

    # the tiny model into the same folder: refused before it loads, nothing written
    before = (tmp_path / "amc23.jsonl").read_text()
    stderr = run_eval(tiny, tmp_path, *args, ok=False)
    assert "holds results of a different run" in stderr and "model:" in stderr and "prompt:" in stderr
    assert (tmp_path / "amc23.jsonl").read_text() == before
