"""The evaluation harness's overhead over its generation backend alone.

    python benchmarks/eval_overhead.py [--problems 64] [--n 4] [--max-new-tokens 128] [--repeats 3]

Times, on the same prompts and seeds, (a) ``HFBackend.generate`` alone and (b) the harness's
``run_benchmark``: the same generation plus math-verify grading in worker processes, per-chunk append and
fsync of every graded row, and the summary metrics (maj@k included). The overhead is (b - a) / a. Runs are
interleaved (a b a b ...) and the medians compared, since a 2-core machine is noisy. The model is the tiny
Qwen2 of ``dft.models.tiny``, whose generation is very cheap, so the overhead measured here is an upper bound of
what a real model (seconds per response) would see.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from dft.eval.backends import HFBackend, Request, SamplingParams
from dft.eval.benchmarks import load_benchmark
from dft.eval.grading import Grader
from dft.eval.runner import request_seed, run_benchmark, summarize
from dft.models.generation import ModelFormat
from dft.models.prompts import build_prompt
from dft.models.tiny import build_tiny_assets


def time_backend(backend, requests, params, stops) -> float:
    start = time.perf_counter()
    backend.generate(requests, params, stops)
    return time.perf_counter() - start


def time_harness(backend, prompts, params, stops, grader, out_path: Path, chunk_size: int) -> float:
    start = time.perf_counter()
    rows = run_benchmark(prompts, out_path, backend.generate, params, stops, grader.grade_many, chunk_size)
    summarize(prompts, rows, params, grader.equivalent)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=64)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=32)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="eval_overhead."))
    assets = build_tiny_assets(work / "tiny", n_train=256, n_val=8, n_test=8)
    backend = HFBackend(str(assets.model_dir), batch_size=args.chunk_size)
    fmt = ModelFormat.load(str(assets.model_dir))
    problems = load_benchmark("math500")[: args.problems]
    params = SamplingParams(n=args.n, temperature=1.0, max_new_tokens=args.max_new_tokens)
    prompts = fmt.encode_all(problems, lambda p: build_prompt("chat-cot", p.problem, fmt.tokenizer),
                             params.max_new_tokens, "math500")  # fmt: skip
    requests = [Request(p.ids, params.n, p.budget, request_seed(params.seed, p.problem.id, 0)) for p in prompts]

    raw, harness = [], []
    with Grader(workers=2) as grader:
        for repeat in range(args.repeats):
            # the backend alone, chunked as the harness chunks it
            raw.append(sum(time_backend(backend, requests[i : i + args.chunk_size], params, fmt.stops)
                           for i in range(0, len(requests), args.chunk_size)))  # fmt: skip
            harness.append(time_harness(backend, prompts, params, fmt.stops, grader, work / f"run{repeat}.jsonl",
                                        args.chunk_size))  # fmt: skip
    a, b = statistics.median(raw), statistics.median(harness)
    print(f"| responses | backend alone (s) | harness (s) | overhead |\n|---|---|---|---|\n"
          f"| {len(problems)} x {args.n} | {a:.2f} | {b:.2f} | {100 * (b - a) / a:+.1f}% |")  # fmt: skip
    print(f"\nall runs: backend {[round(x, 2) for x in raw]}, harness {[round(x, 2) for x in harness]}")


if __name__ == "__main__":
    main()
