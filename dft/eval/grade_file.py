"""Re-grade saved responses: ``python -m dft grade FILE.jsonl [--grader ours|paper] [--out OUT.jsonl | --in-place]``.

Every line must be a JSON object with ``response`` and ``gold`` fields (other fields are kept as they are). Each
line is written back with ``correct``, ``extracted``, ``extracted_by`` (the extraction rule) and ``error`` set by
``dft.eval.grading``, to ``--out`` (default: ``FILE.graded.jsonl`` beside it; the input is never touched unless
``--in-place`` asks for it, which rewrites it atomically, once every line is graded). Prints one summary line,
e.g. ``graded 1234: 812 correct, 3 errors (2 timeout)``. A line that is not JSON or lacks a field stops the run
before any grading, naming the file and line.

``--grader paper`` gives the DFT paper's harness's verdicts (docs/grading.md); its rules depend on the benchmark:
a line's ``benchmark`` field, else ``--benchmark``, else the file's name (``minerva_math.jsonl``, as ``dft.eval``
writes them), else none (MATH's rules). Only the verdict fields change; ``grader: paper`` marks the paper's (a
line without one is ours).
"""

import argparse
import json
import os
import sys
from pathlib import Path

from tqdm import tqdm

from dft.core.args import DefaultsHelpFormatter
from dft.core.io import write_text_atomic
from dft.data.problems import read_jsonl
from dft.eval.benchmarks import BENCHMARKS
from dft.eval.graders import DEFAULT_GRADER
from dft.eval.grading import GRADERS, Grader, Verdict

REQUIRED = ("response", "gold")


def check_row(row, where: str) -> dict:
    """``row`` if it has a string ``response`` and a string or numeric ``gold``; else ValueError naming ``where``."""
    missing = [key for key in REQUIRED if key not in row]
    if missing:
        raise ValueError(f"{where}: missing field(s) {', '.join(missing)} (need {', '.join(REQUIRED)})")
    if not isinstance(row["response"], str):
        raise ValueError(f"{where}: response must be a string, got {type(row['response']).__name__}")
    if isinstance(row["gold"], bool) or not isinstance(row["gold"], (str, int, float)):
        raise ValueError(f"{where}: gold must be a string or a number, got {row['gold']!r}")
    return row


def read_graded_rows(path: Path) -> list[dict]:
    """The JSON objects of ``path``, one per non-blank line (``dft.data.problems.read_jsonl``); ValueError naming
    ``path: line N`` on a bad line."""
    rows = read_jsonl(path).strict(ValueError)
    return [check_row(row, rows.label(i)) for i, row in enumerate(rows.rows)]


def write_rows(path: Path, rows: list[dict]) -> None:
    """Write ``rows`` as JSONL through a temporary file in the same folder, so a crash never leaves half a file."""
    write_text_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def summary(verdicts: list[Verdict]) -> str:
    """``graded N: C correct, E errors (T timeout)``."""
    errors = [v.error for v in verdicts if v.error]
    timeouts = sum(e == "timeout" for e in errors)
    correct = sum(v.correct for v in verdicts)
    return f"graded {len(verdicts)}: {correct} correct, {len(errors)} errors ({timeouts} timeout)"


def regrade(path: Path, out: Path, timeout_s: float | None, workers: int, grader_name: str = "ours",
            benchmark: str | None = None) -> str:  # fmt: skip
    """Grade every line of ``path`` into ``out`` with the named grader; return the summary line."""
    rows = read_graded_rows(path)
    benchmark = benchmark or (path.stem if path.stem in BENCHMARKS else None)
    pairs = [(row["response"], row["gold"], row.get("benchmark", benchmark)) for row in rows]
    with Grader(workers, timeout_s, grader_name) as grader, tqdm(total=len(pairs), unit="response") as bar:
        verdicts = grader.grade_many(pairs, progress=bar.update)
    for row, verdict in zip(rows, verdicts):
        row.update(correct=verdict.correct, extracted=verdict.extracted, extracted_by=verdict.rule, error=verdict.error)
        if grader_name != DEFAULT_GRADER:  # a row without one is ours, as before the choice existed
            row["grader"] = grader_name
    write_rows(out, rows)
    return summary(verdicts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m dft grade",
        description=__doc__.splitlines()[0],
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("file", type=Path, help="JSONL with response and gold fields")
    parser.add_argument("--out", type=Path, help="where to write the graded lines (default: FILE.graded.jsonl)")
    parser.add_argument("--in-place", action="store_true", help="rewrite FILE itself instead of writing --out")
    parser.add_argument("--grader", choices=list(GRADERS), default="ours",
                        help="ours (math-verify) or paper (the DFT paper's Qwen2.5-Math harness)")  # fmt: skip
    parser.add_argument("--benchmark", choices=list(BENCHMARKS),
                        help="for lines without a benchmark field (default: the file's name, if one)")  # fmt: skip
    parser.add_argument("--timeout", type=float, help="seconds per response (default: the grader's, ours 5, paper 3)")
    parser.add_argument("--workers", type=int, default=max(1, min(8, (os.cpu_count() or 2) - 1)),
                        help="grading processes")  # fmt: skip
    args = parser.parse_args(argv)
    if args.in_place and args.out:
        parser.error("--in-place and --out exclude each other")
    out = args.file if args.in_place else args.out or args.file.with_name(f"{args.file.stem}.graded.jsonl")
    try:
        print(regrade(args.file, out, args.timeout, args.workers, args.grader, args.benchmark))
    except (OSError, ValueError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
