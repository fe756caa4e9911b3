r"""Benchmark loaders: every benchmark becomes a list of ``Problem(id, problem, gold)`` with a LaTeX gold answer.

``load_benchmark(name, data_dir=None, source="local")`` reads ``<data_dir>/<name>/test.jsonl`` (laid out like
``../shared/data``; see its SOURCES.md) or, with ``source="hub"``, the Hugging Face dataset recorded for the
benchmark. Each source has its own field mapping (``dft.data.problems.FieldMap``), because hub copies name their
fields differently from the jsonl files the DFT evaluation shipped; rows, fields and golds are read by
``dft.data.problems``, the code that reads the training data. Loading is strict, so a wrong file fails loudly
instead of producing a wrong score:

- the record count must be the benchmark's (the original DFT code evaluated the 5,000-problem MATH test set
  under the name "math500"; here that file is refused, with a pointer to ``math_full_test``);
- a row without a needed field, with an empty problem or gold, or a ``\boxed{}``-less solution is an error
  naming the file (or hub dataset), the line (or row) and the field;
- ids must be unique.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dft.data.problems import FieldMap, HubSource, Problem, SourceError, read_hub, read_jsonl, to_problems

__all__ = ["BENCHMARKS", "PAPER_BENCHMARKS", "BenchmarkDataError", "get_spec", "load_benchmark"]

DATA_DIR_ENV = "DFT_DATA_DIR"


class BenchmarkDataError(SourceError):
    """A benchmark file or hub dataset does not hold what its name promises."""


@dataclass(frozen=True)
class BenchmarkSpec:
    """A benchmark: its record count, how to read its local jsonl, and its hub source (None if none is recorded),
    read through ``hub_fields`` (None: the local file's fields)."""

    name: str
    count: int | None  # None: any size (a benchmark made by code)
    local: FieldMap
    description: str
    hub: HubSource | None = None
    hub_fields: FieldMap | None = None
    # its column title in tables
    title: str = ""
    # one of the DFT paper's Table 1 benchmarks (``benchmarks=paper``, the evaluation's default)
    paper: bool = False


BENCHMARKS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in [
        BenchmarkSpec("math500", 500, FieldMap("unique_id", "problem", "answer"),
                      "MATH500 (Lightman et al.'s 500-problem subset of the MATH test set); gold = answer",
                      # the hub fields (problem, solution, answer, subject, level, unique_id) match the local file
                      HubSource("HuggingFaceH4/MATH-500", None, "test"), title="Math500", paper=True),
        BenchmarkSpec("minerva_math", 272, FieldMap("idx", "problem", "solution", "boxed"),
                      "Minerva Math (MIT OCW quantitative problems); gold = last \\boxed{} of solution",
                      # UNVERIFIED: math-ai/minervamath is a single test.jsonl; third-party code reads it as
                      # `question` plus an already-extracted `answer` (no solution, no id): ids are row positions.
                      HubSource("math-ai/minervamath", None, "test"), FieldMap(None, "question", "answer"),
                      title="Minerva Math", paper=True),
        BenchmarkSpec("olympiadbench", 675, FieldMap("id", "question", "final_answer", "olympiad"),
                      "OlympiadBench, open-ended text-only English competition maths (OE_TO_maths_en_COMP); "
                      "gold = final_answer[0] without $",
                      # the same OpenBMB release as the local file (id, question, final_answer list, ...); field
                      # names believed identical but not checked against the hub here
                      HubSource("Hothan/OlympiadBench", "OE_TO_maths_en_COMP", "train"),
                      title="Olympiad Bench", paper=True),
        BenchmarkSpec("aime24", 30, FieldMap("id", "problem", "answer"), "AIME 2024 (I and II); gold = answer",
                      # HuggingFaceH4/aime_2024: id, problem, solution, answer (string), url, year
                      HubSource("HuggingFaceH4/aime_2024", None, "train"), title="AIME24", paper=True),
        BenchmarkSpec("amc23", 40, FieldMap("id", "problem", "answer", "integer"),
                      "AMC 2023 (the 40-problem set used by Qwen2.5-Math); gold = answer as an integer",
                      # UNVERIFIED: third-party code reads math-ai/amc23 as `question` + `answer`; whether it has an
                      # `id` column is unknown, so ids there are row positions; the answer may be a float (27.0)
                      HubSource("math-ai/amc23", None, "test"), FieldMap(None, "question", "answer", "integer"),
                      title="AMC23", paper=True),
        # SOURCES.md records no hub dataset for AIME 2025: local only
        BenchmarkSpec("aime25", 30, FieldMap(None, "question", "answer"),
                      "AIME 2025 (not in the paper); gold = answer", title="AIME25"),
        BenchmarkSpec("gsm8k", 1319, FieldMap("idx", "question", "answer", "gsm8k"),
                      "GSM8K test set (not in the paper); gold = number after ####, commas removed",
                      # openai/gsm8k (main): question, answer; no idx column, so ids there are row positions (= idx)
                      HubSource("openai/gsm8k", "main", "test"), FieldMap(None, "question", "answer", "gsm8k"),
                      title="GSM8K"),
        BenchmarkSpec("math_full_test", 5000, FieldMap("idx", "problem", "solution", "boxed"),
                      "the full 5,000-problem MATH test set (what the original DFT code called math500); "
                      "gold = last \\boxed{} of solution",
                      # DigitalLearningGmbH/MATH-lighteval: problem, level, solution, type; no idx: ids are positions
                      HubSource("DigitalLearningGmbH/MATH-lighteval", None, "test"),
                      FieldMap(None, "problem", "solution", "boxed"), title="MATH (5,000)"),
        # made by code, any size (dft.models.tiny_sources): the toy scale's benchmark a tiny Base can learn
        BenchmarkSpec("tiny_math", None, FieldMap("id", "problem", "gold"),
                      "the tiny model's held-out word problems (python -m dft tiny; <out>/benchmarks); gold = gold",
                      title="tiny-math"),
    ]
}  # fmt: skip
# The five benchmarks of the DFT paper's Table 1, in its column order (the order of BENCHMARKS).
PAPER_BENCHMARKS = tuple(name for name, spec in BENCHMARKS.items() if spec.paper)
PAPER = "paper"


def benchmark_names(value) -> list[str]:
    """The benchmarks a ``benchmarks=`` value names: a list of names, or ``paper`` (the paper's five)."""
    return list(PAPER_BENCHMARKS) if value == PAPER else list(value)


def default_data_dir() -> Path:
    """``$DFT_DATA_DIR`` if set, else ``../shared/data`` next to the repository root."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def load_benchmark(name: str, data_dir: str | os.PathLike | None = None, source: str = "local") -> list[Problem]:
    """Load benchmark ``name`` from ``<data_dir>/<name>/test.jsonl`` (``source="local"``) or the hub (``"hub"``).

    ``data_dir`` defaults to :func:`default_data_dir`. The record count is checked against the registry.
    """
    spec = get_spec(name)
    if source == "local":
        path = (Path(data_dir) if data_dir is not None else default_data_dir()) / name / "test.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"no benchmark file {path} (set data_dir or ${DATA_DIR_ENV}, or use source=hub)")
        rows = read_jsonl(path)
        _check_count(spec, len(rows), f"file {path}")  # before the fields: a wrong file may lack them
        return to_problems(rows, spec.local.problem, BenchmarkDataError)
    if source == "hub":
        if spec.hub is None:
            raise ValueError(f"benchmark {spec.name!r} has no hub source recorded; load it with source='local'")
        rows = read_hub(spec.hub)
        _check_count(spec, len(rows), rows.where)
        return to_problems(rows, (spec.hub_fields or spec.local).problem, BenchmarkDataError)
    raise ValueError(f"unknown source {source!r}; expected 'local' or 'hub'")


def get_spec(name: str) -> BenchmarkSpec:
    """The registry entry for ``name``; an unknown name is an error listing the known ones."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}") from None


def _check_count(spec: BenchmarkSpec, actual: int, where: str) -> None:
    """Refuse a source whose record count is not the benchmark's, suggesting the benchmark(s) it may really be."""
    if spec.count is None or actual == spec.count:
        return
    message = f"{where} has {actual} records, but benchmark {spec.name!r} has {spec.count}"
    others = [other.name for other in BENCHMARKS.values() if other.count == actual and other.name != spec.name]
    if others:
        message += f"; a {actual}-record file looks like {' or '.join(others)} (load it under that name)"
    if spec.name == "math500" and "math_full_test" in others:
        message += ". The original DFT code evaluated the full 5,000-problem MATH test set under the name 'math500'"
    raise BenchmarkDataError(message)
