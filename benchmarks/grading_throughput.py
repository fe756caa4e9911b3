"""Grading throughput: responses per second through ``dft.eval.grading.Grader``, hard timeout in place.

What: ~1000 responses of realistic length built from MATH500's reference solutions (read from
``../shared/data/math500/test.jsonl``, never copied into the repo): each problem's restatement plus its
step-by-step solution ending in ``\\boxed{...}``, the solution repeated as a "double-check" until the response
has at least ~400 tokens, once as written (a correct response) and once with the last boxed answer swapped for
a random other problem's answer (almost always wrong; wrong answers make math-verify try more comparisons).
Golds are the ``answer`` field. The pairs are shuffled (seeded): math-verify caches its last 20 parses, and in
MATH500 order with the next problem's answer as the wrong one, each wrong answer would be the next pair's gold,
which flatters a single worker (about 2x). Every measurement gets a fresh Grader (cold math-verify and sympy
caches); its workers are started and warmed on a few pairs first, so the timed part is steady-state grading:
box extraction in the caller, one round trip per response to a worker process, math-verify parse + verify there.

Noise: the machine may be shared. Rounds alternate the worker counts (1, 2, 1, 2, ...); the table gives the
median responses/s over rounds and the min-max.

Why these inputs: graders spend their time on the boxed answer and the gold, not the response text, so the
mix of answer kinds (integers, fractions, radicals, intervals, matrices, text) is what matters, and MATH500's
is the one the harness grades most.

    python benchmarks/grading_throughput.py                 # workers 1 and 2, timeout 5 s, 3 rounds
    python benchmarks/grading_throughput.py --workers 1 2 4 --rounds 5 --data /path/to/math500/test.jsonl
"""

import argparse
import json
import os
import random
import shlex
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dft.data.problems import last_boxed  # noqa: E402
from dft.eval.grading import Grader  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "math500" / "test.jsonl"


def swap_last_box(text: str, new_answer: str) -> str:
    """``text`` with the content of its last ``\\boxed{...}`` replaced by ``new_answer``."""
    old = last_boxed(text)
    start = text.rfind("\\boxed")
    at = text.find(old, start)
    return text[:at] + new_answer + text[at + len(old) :]


def make_response(record: dict, min_chars: int) -> str:
    """A step-by-step response to ``record``: restatement, solution, and re-checks of it up to ``min_chars``."""
    response = f"Let's restate the problem. {record['problem']}\n\nSolution, step by step:\n\n{record['solution']}"
    while len(response) < min_chars:
        response += f"\n\nLet me double-check this by going through it again.\n\n{record['solution']}"
    return response


def build_pairs(records: list[dict], min_chars: int, seed: int = 0) -> list[tuple[str, str]]:
    """(response, gold) pairs, shuffled: per record a correct response and one with another record's answer."""
    rng = random.Random(seed)
    usable = [r for r in records if last_boxed(r["solution"])]
    pairs = []
    for i, record in enumerate(usable):
        response = make_response(record, min_chars)
        other = usable[(i + rng.randrange(1, len(usable))) % len(usable)]
        pairs += [(response, record["answer"]), (swap_last_box(response, other["answer"]), record["answer"])]
    rng.shuffle(pairs)
    return pairs


def measure(pairs: list[tuple[str, str]], workers: int, timeout_s: float) -> dict:
    """Steady-state responses/s with ``workers`` processes, and the verdict counts."""
    with Grader(workers=workers, timeout_s=timeout_s) as grader:
        start = time.perf_counter()
        grader.grade_many(pairs[: 4 * workers])  # starts and warms every worker
        startup = time.perf_counter() - start
        start = time.perf_counter()
        verdicts = grader.grade_many(pairs)
        elapsed = time.perf_counter() - start
    errors = [v.error for v in verdicts if v.error]
    return {
        "workers": workers,
        "responses": len(pairs),
        "seconds": elapsed,
        "per_second": len(pairs) / elapsed,
        "startup_s": startup,
        "correct": sum(v.correct for v in verdicts),
        "errors": len(errors),
        "timeouts": sum(e == "timeout" for e in errors),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MATH500 jsonl: problem, solution, answer")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--timeout", type=float, default=5.0, help="per-response grading timeout, seconds")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per worker count, alternating")
    parser.add_argument("--min-chars", type=int, default=1600, help="shortest response, characters (~4 per token)")
    args = parser.parse_args()
    records = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    pairs = build_pairs(records, args.min_chars)
    mean_chars = sum(len(r) for r, _ in pairs) / len(pairs)
    runs = {n: [] for n in args.workers}
    for _ in range(args.rounds):
        for n in args.workers:
            runs[n].append(measure(pairs, n, args.timeout))
    print(f"{len(pairs)} responses from {args.data} ({len(records)} problems), mean {mean_chars:.0f} chars "
          f"(~{mean_chars / 4:.0f} tokens); timeout {args.timeout:g} s; {os.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.1f}\n")  # fmt: skip
    print("| workers | responses/s (median) | min-max | worker start-up (s) | correct | errors (timeouts) |")
    print("|---|---|---|---|---|---|")
    for n, rows in runs.items():
        rates = [r["per_second"] for r in rows]
        last = rows[-1]
        print(f"| {n} | {statistics.median(rates):.0f} | {min(rates):.0f}-{max(rates):.0f} | "
              f"{statistics.median(r['startup_s'] for r in rows):.1f} | {last['correct']}/{last['responses']} | "
              f"{last['errors']} ({last['timeouts']}) |")  # fmt: skip
    print(f"\ncommand: python {shlex.join(sys.argv)}")


if __name__ == "__main__":
    main()
