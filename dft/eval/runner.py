"""Evaluate one model on benchmarks: generate, grade, append, summarise; resumable at any point.

Per benchmark, ``<out>/<benchmark>.jsonl`` holds one graded row per (problem, sample): prompt id, sample
index, response (the text before the stop), how generation ended (``finish``: ``stop`` or ``length``, i.e. the
new-token budget ran out; ``stop``: the stop token or string), extracted answer and the rule that extracted it,
verdict and grading error. A restarted run reads it, generates only the missing samples, and never writes a
(problem, sample) twice; ``dft.eval.fingerprint`` makes sure the folder is the same run's.
``<out>/summary.json`` records the fingerprint, the stop set, the context, the git commit, the counts and
the metrics, with the share of truncated responses per benchmark.
"""

import hashlib
import subprocess
from functools import partial
from pathlib import Path
from typing import Callable

from dft.core.io import write_json_atomic
from dft.eval.backends import LENGTH, Request, SamplingParams
from dft.eval.metrics import avg_at_k, maj_at_k, mean_acc, pass_at_k
from dft.eval.store import append_rows, load_rows


def request_seed(base_seed: int, problem_id: str, first_sample: int) -> int:
    """A seed per (problem, first missing sample): reproducible whatever the chunking or resume point."""
    digest = hashlib.sha256(f"{base_seed}:{problem_id}:{first_sample}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def missing_samples(prompts, done: dict, n: int) -> list[tuple[object, list[int]]]:
    """(encoded prompt, sample indices without a row) for every problem that still lacks some of its n samples."""
    todo = []
    for prompt in prompts:
        missing = [i for i in range(n) if (prompt.problem.id, i) not in done]
        if missing:
            todo.append((prompt, missing))
    return todo


def _graded_rows(chunk, completions, verdicts) -> list[dict]:
    rows, position = [], 0
    for (prompt, missing), samples in zip(chunk, completions):
        for sample, completion in zip(missing, samples):
            verdict = verdicts[position]
            position += 1
            rows.append(
                {"id": prompt.problem.id, "sample": sample, "gold": prompt.problem.gold, "response": completion.text,
                 "finish": completion.finish, "stop": completion.stop, "extracted": verdict.extracted,
                 "extracted_by": verdict.rule, "correct": verdict.correct, "error": verdict.error}
            )  # fmt: skip
    return rows


def run_benchmark(prompts, out_path: Path, generate: Callable, params: SamplingParams, stops, grade_many: Callable,
                  chunk_size: int = 32, on_rows: Callable | None = None,
                  on_samples: Callable | None = None) -> dict:  # fmt: skip
    """Generate and grade every missing sample of ``prompts`` (``EncodedPrompt``s) into ``out_path``; return all
    rows by key.

    ``generate(requests, params, stops)`` is a backend's; ``grade_many([(response, gold), ...])`` returns one
    verdict (``correct``, ``extracted``, ``rule``, ``error``) per pair. ``on_rows(k)`` is called as each chunk's
    ``k`` rows are saved; ``on_samples(k)`` (a progress bar's ``update``) first with the samples already saved,
    then by the backend as it generates (``generate(..., progress=on_samples)``).
    """
    todo = missing_samples(prompts, load_rows(out_path), params.n)
    if on_samples is not None:
        on_samples(len(prompts) * params.n - sum(len(missing) for _, missing in todo))
        generate = partial(generate, progress=on_samples)
    for start in range(0, len(todo), chunk_size):
        chunk = todo[start : start + chunk_size]
        requests = [Request(p.ids, len(missing), p.budget, request_seed(params.seed, p.problem.id, missing[0]))
                    for p, missing in chunk]  # fmt: skip
        completions = generate(requests, params, stops)
        pairs = [(c.text, p.problem.gold) for (p, _), samples in zip(chunk, completions) for c in samples]
        rows = _graded_rows(chunk, completions, grade_many(pairs))
        append_rows(out_path, rows)
        if on_rows:
            on_rows(len(rows))
    return load_rows(out_path)


def summarize(prompts, rows: dict, params: SamplingParams, equivalent: Callable[[str, str], bool]) -> dict:
    """Metrics over the current problems' rows (rows of other problems in the file are left out), with the share
    of responses that ran out of budget and the number of prompts whose budget the context cut."""
    keyed = [[rows[(p.problem.id, i)] for i in range(params.n)] for p in prompts]
    metrics = sample_metrics(keyed, params.n, equivalent)
    metrics["prompts_cut_by_context"] = sum(p.budget < params.max_new_tokens for p in prompts)
    metrics["prompt_tokens_max"] = max((len(p.ids) for p in prompts), default=0)
    return metrics


def sample_metrics(keyed: list[list[dict]], n: int, equivalent: Callable[[str, str], bool]) -> dict:
    """The metrics of graded rows, ``n`` per problem (a list of each problem's rows, sample 0 first)."""
    correct = [[r["correct"] for r in samples] for samples in keyed]
    answers = [[r["extracted"] for r in samples] for samples in keyed]
    flat = [r for samples in keyed for r in samples]
    errors = [r["error"] for r in flat if r["error"]]
    return {
        "problems": len(keyed),
        "samples_per_problem": n,
        f"avg@{n}": avg_at_k(correct),
        "mean_acc": mean_acc(correct),
        "pass@1": pass_at_k(correct, 1),
        f"pass@{n}": pass_at_k(correct, n),
        f"maj@{n}": maj_at_k(answers, correct, n, equivalent),
        "truncated": sum(r.get("finish") == LENGTH for r in flat) / len(flat) if flat else 0.0,
        "grading_errors": len(errors),
        "grading_timeouts": sum(e == "timeout" for e in errors),
    }


def summary_line(name: str, metrics: dict) -> str:
    """One readable line per benchmark, e.g. ``aime24: avg@16 8.5% (30 x 16), 2.1% truncated``."""
    n = metrics["samples_per_problem"]
    line = f"{name}: avg@{n} {100 * metrics[f'avg@{n}']:.1f}% ({metrics['problems']} x {n})"
    if metrics.get("truncated"):
        line += f", {100 * metrics['truncated']:.1f}% truncated"
    if metrics["grading_errors"]:
        line += f", {metrics['grading_errors']} grading errors ({metrics['grading_timeouts']} timeouts)"
    return line


def git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent)
    return out.stdout.strip() or "unknown"


def write_summary(out_dir: Path, run_info: dict, per_benchmark: dict) -> dict:
    """``summary.json``: what produced the numbers, then the numbers, with the mean over benchmarks."""
    keys = set.intersection(*(set(m) for m in per_benchmark.values())) if per_benchmark else set()
    metric_keys = sorted(k for k in keys if "@" in k or k == "mean_acc")
    average = {k: sum(m[k] for m in per_benchmark.values()) / len(per_benchmark) for k in metric_keys}
    summary = {**run_info, "commit": git_commit(), "benchmarks": per_benchmark, "average": average}
    write_json_atomic(Path(out_dir) / "summary.json", summary)
    return summary
