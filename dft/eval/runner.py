"""Evaluate one model on benchmarks: generate, grade, append, summarise; resumable at any point.

Per benchmark, ``<out>/<benchmark>.jsonl`` holds one graded row per (problem, sample): prompt id, sample
index, response, extracted answer, verdict and grading error. A restarted run reads it, generates only the
missing samples, and never writes a (problem, sample) twice. ``<out>/summary.json`` records the model, the
prompt template, the sampling parameters, the git commit, the dataset counts and the metrics.
"""

import hashlib
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from dft.eval.backends import SamplingParams
from dft.eval.metrics import avg_at_k, maj_at_k, pass_at_k
from dft.eval.store import append_rows, load_rows
from dft.io import write_json_atomic


def request_seed(base_seed: int, problem_id: str, first_sample: int) -> int:
    """A seed per (problem, first missing sample): reproducible whatever the chunking or resume point."""
    digest = hashlib.sha256(f"{base_seed}:{problem_id}:{first_sample}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def missing_samples(problems, done: dict, n: int) -> list[tuple[object, list[int]]]:
    """(problem, sample indices without a row) for every problem that still lacks some of its n samples."""
    todo = []
    for problem in problems:
        missing = [i for i in range(n) if (problem.id, i) not in done]
        if missing:
            todo.append((problem, missing))
    return todo


def _graded_rows(chunk, completions, verdicts) -> list[dict]:
    rows, position = [], 0
    for (problem, missing), texts in zip(chunk, completions):
        for sample, text in zip(missing, texts):
            verdict = verdicts[position]
            position += 1
            rows.append(
                {"id": problem.id, "sample": sample, "gold": problem.gold, "response": text,
                 "extracted": verdict.extracted, "correct": verdict.correct, "error": verdict.error}
            )  # fmt: skip
    return rows


def run_benchmark(problems, out_path: Path, generate: Callable, prompt_of: Callable, params: SamplingParams,
                  grade_many: Callable, chunk_size: int = 32, on_rows: Callable | None = None) -> dict:  # fmt: skip
    """Generate and grade every missing sample of ``problems`` into ``out_path``; return all rows by key.

    ``generate(prompts, params, seeds)`` is a backend's; ``grade_many([(response, gold), ...])`` returns one
    verdict (``correct``, ``extracted``, ``error``) per pair.
    """
    todo = missing_samples(problems, load_rows(out_path), params.n)
    for start in range(0, len(todo), chunk_size):
        chunk = todo[start : start + chunk_size]
        request = SamplingParams(**{**asdict(params), "n": max(len(missing) for _, missing in chunk)})
        seeds = [request_seed(params.seed, problem.id, missing[0]) for problem, missing in chunk]
        completions = generate([prompt_of(problem) for problem, _ in chunk], request, seeds)
        completions = [texts[: len(missing)] for (_, missing), texts in zip(chunk, completions)]
        pairs = [(text, problem.gold) for (problem, _), texts in zip(chunk, completions) for text in texts]
        rows = _graded_rows(chunk, completions, grade_many(pairs))
        append_rows(out_path, rows)
        if on_rows:
            on_rows(len(rows))
    return load_rows(out_path)


def summarize(problems, rows: dict, n: int, equivalent: Callable[[str, str], bool]) -> dict:
    """Metrics over the current problems' rows (rows of other problems in the file are left out)."""
    keyed = [[rows[(p.id, i)] for i in range(n)] for p in problems]
    correct = [[r["correct"] for r in samples] for samples in keyed]
    answers = [[r["extracted"] for r in samples] for samples in keyed]
    errors = [r["error"] for samples in keyed for r in samples if r["error"]]
    return {
        "problems": len(problems),
        "samples_per_problem": n,
        f"avg@{n}": avg_at_k(correct),
        "pass@1": pass_at_k(correct, 1),
        f"pass@{n}": pass_at_k(correct, n),
        f"maj@{n}": maj_at_k(answers, correct, n, equivalent),
        "grading_errors": len(errors),
        "grading_timeouts": sum(e == "timeout" for e in errors),
    }


def summary_line(name: str, metrics: dict) -> str:
    """One readable line per benchmark, e.g. ``aime24: avg@16 8.5% (30 x 16)``."""
    n = metrics["samples_per_problem"]
    line = f"{name}: avg@{n} {100 * metrics[f'avg@{n}']:.1f}% ({metrics['problems']} x {n})"
    if metrics["grading_errors"]:
        line += f", {metrics['grading_errors']} grading errors ({metrics['grading_timeouts']} timeouts)"
    return line


def git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent)
    return out.stdout.strip() or "unknown"


def write_summary(out_dir: Path, run_info: dict, per_benchmark: dict) -> dict:
    """``summary.json``: what produced the numbers, then the numbers, with the mean over benchmarks."""
    keys = set.intersection(*(set(m) for m in per_benchmark.values())) if per_benchmark else set()
    metric_keys = sorted(k for k in keys if "@" in k)
    average = {k: sum(m[k] for m in per_benchmark.values()) / len(per_benchmark) for k in metric_keys}
    summary = {**run_info, "commit": git_commit(), "benchmarks": per_benchmark, "average": average}
    write_json_atomic(Path(out_dir) / "summary.json", summary)
    return summary
