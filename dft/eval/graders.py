"""The graders a run can choose (``grader=`` of ``dft eval``, ``--grader`` of ``dft grade`` and ``dft regrade``), light
to import.

- ``ours``: math-verify with our fixes (``dft.eval.judge``), 5 s per answer; the default.
- ``paper``: the DFT paper's Qwen2.5-Math harness's verdicts (``dft.eval.paper_grader``), 3 s per answer as its
  ``evaluate.py`` allows; what the paper's tables were graded with.

docs/grading.md compares them on the real benchmark golds.
"""

GRADERS = {"ours": 5.0, "paper": 3.0}  # grader name -> its default seconds per answer
DEFAULT_GRADER = "ours"


def grader_of(summary: dict) -> str:
    """The grader that made an evaluation summary; summaries from before the choice existed are ours."""
    return summary.get("grader") or DEFAULT_GRADER


def check_one_grader(runs: dict[str, dict], where: dict[str, str]) -> str:
    """The one grader of ``runs`` (key -> summary); ValueError naming the files when two graders made them, since
    their numbers differ by up to several points on some benchmarks (docs/grading.md)."""
    by_grader: dict[str, list[str]] = {}
    for key, summary in runs.items():
        by_grader.setdefault(grader_of(summary), []).append(where.get(key, key))
    if len(by_grader) > 1:
        listed = "; ".join(f"{name}: {', '.join(files)}" for name, files in sorted(by_grader.items()))
        raise ValueError(f"summaries of different graders cannot share a table ({listed}); regrade with "
                         "python -m dft grade --grader and re-summarise, or build one table per grader")  # fmt: skip
    return next(iter(by_grader), DEFAULT_GRADER)
