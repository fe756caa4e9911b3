"""Re-grade a finished evaluation with another grader, from its saved responses (no second generation).

    python -m dft regrade RUN_DIR --grader ours [--out RUN_DIR/regraded-ours] [--workers N]

``RUN_DIR`` is a ``dft.eval`` folder (``summary.json`` and one ``<benchmark>.jsonl`` per benchmark). Every
benchmark's rows are graded again (``dft grade``: only the verdict fields change) into ``--out``, with a
``summary.json`` there: the original's run information with the new ``grader`` and ``regraded_from``, and the
metrics recomputed from the rows (avg@k, mean_acc, pass@1, pass@k, maj@k; the prompt counts are the original's).
The paper-table recipes grade with the paper's grader and write ours beside it this way (recipes/common.sh).
"""

import argparse
import json
import os
import sys
from pathlib import Path

from dft.core.args import DefaultsHelpFormatter
from dft.eval.grade_file import read_graded_rows, regrade
from dft.eval.graders import GRADERS
from dft.eval.grading import Grader
from dft.eval.runner import sample_metrics, write_summary

KEPT = ("prompts_cut_by_context", "prompt_tokens_max")  # what the rows cannot tell: taken from the original


def read_summary(run_dir: Path) -> dict:
    """The folder's summary.json; ValueError naming it when missing or not an evaluation summary."""
    path = run_dir / "summary.json"
    try:
        summary = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: no evaluation summary to regrade ({exc})") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("benchmarks"), dict):
        raise ValueError(f"{path}: not an evaluation summary (no 'benchmarks' object; written by python -m dft eval)")
    return summary


def metrics_from_rows(rows: list[dict], n: int, equivalent) -> dict:
    """The summary metrics of one benchmark from its graded rows: problems with all ``n`` samples, file order."""
    by_problem: dict[str, dict[int, dict]] = {}
    for row in rows:
        by_problem.setdefault(row["id"], {})[row["sample"]] = row
    complete = [
        [samples[i] for i in range(n)] for samples in by_problem.values() if all(i in samples for i in range(n))
    ]
    return sample_metrics(complete, n, equivalent)


def regrade_run(run_dir: Path, out: Path, grader: str, workers: int) -> dict:
    """Regrade every benchmark of ``run_dir`` into ``out``; return the new summary."""
    summary = read_summary(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    per_benchmark = {}
    with Grader(workers, None, grader) as pool:
        for name, old in summary["benchmarks"].items():
            source = run_dir / f"{name}.jsonl"
            if not source.is_file():
                raise ValueError(f"{source}: missing; {run_dir}/summary.json names benchmark {name!r}")
            print(f"{name}: {regrade(source, out / source.name, None, workers, grader)}")
            metrics = metrics_from_rows(
                read_graded_rows(out / source.name), old["samples_per_problem"], pool.equivalent
            )
            per_benchmark[name] = {**metrics, **{k: old[k] for k in KEPT if k in old}}
    run_info = {k: v for k, v in summary.items() if k not in ("benchmarks", "average", "commit")}
    return write_summary(out, {**run_info, "grader": grader, "regraded_from": str(run_dir)}, per_benchmark)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dft regrade", description=__doc__.splitlines()[0], formatter_class=DefaultsHelpFormatter
    )
    parser.add_argument("run_dir", type=Path, help="a dft.eval output folder (summary.json, <benchmark>.jsonl)")
    parser.add_argument("--grader", choices=list(GRADERS), required=True, help="the grader to grade with")
    parser.add_argument("--out", type=Path, help="where to write (default: RUN_DIR/regraded-<grader>)")
    parser.add_argument("--workers", type=int, default=max(1, min(8, (os.cpu_count() or 2) - 1)),
                        help="grading processes")  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    out = args.out or args.run_dir / f"regraded-{args.grader}"
    try:
        regrade_run(args.run_dir, out, args.grader, args.workers)
    except (OSError, ValueError) as exc:
        sys.exit(f"error: {exc}")
    print(f"summary -> {out / 'summary.json'}")


if __name__ == "__main__":
    main()
