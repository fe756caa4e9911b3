r"""Benchmark loaders: every benchmark becomes a list of ``Problem(id, problem, gold)`` with a LaTeX gold answer.

``load_benchmark(name, data_dir=None, source="local")`` reads ``<data_dir>/<name>/test.jsonl`` (laid out like
``../shared/data``; see its SOURCES.md) or, with ``source="hub"``, the Hugging Face dataset recorded for the
benchmark. Each source has its own field mapping, because hub copies name their fields differently from the
jsonl files the DFT evaluation shipped. Loading is strict, so a wrong file fails loudly instead of producing a
wrong score:

- the record count must be the benchmark's (the original DFT code evaluated the 5,000-problem MATH test set
  under the name "math500"; here that file is refused, with a pointer to ``math_full_test``);
- a row without a needed field, with an empty problem or gold, or a ``\boxed{}``-less solution is an error
  naming the file (or hub dataset), the line (or row) and the field;
- ids must be unique.

Problem texts and golds are whitespace-stripped (the Qwen2.5-Math harness strips questions too); golds are
otherwise kept as written, since normalisation is the grader's job. ``load_jsonl_problems(path)`` reads any
``id``/``problem``/``answer`` jsonl (the tiny CPU quickstart's held-out split) with the same checks, minus the
count.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dft.eval.answers import last_boxed

# The five benchmarks of the DFT paper's Table 1, in its column order.
PAPER_BENCHMARKS = ("math500", "minerva_math", "olympiadbench", "aime24", "amc23")
DATA_DIR_ENV = "DFT_DATA_DIR"


@dataclass(frozen=True)
class Problem:
    """One evaluation problem: a unique id, the problem text, and the gold answer as a LaTeX string."""

    id: str
    problem: str
    gold: str


class BenchmarkDataError(ValueError):
    """A benchmark file or hub dataset does not hold what its name promises."""


# ---------------------------------------------------------------------------------------------------------------
# Gold answer extraction (one function per raw gold format)
# ---------------------------------------------------------------------------------------------------------------


def _as_text(value: Any) -> str:
    """A gold stored as a plain string (or a number written as one)."""
    return str(value)


def _boxed_gold(solution: Any) -> str:
    r"""The last ``\boxed{}`` of a worked solution (MATH, Minerva); a solution without one is an error."""
    gold = last_boxed(str(solution))
    if gold is None:
        raise ValueError("has no \\boxed{...} answer")
    return gold


def _olympiad_gold(final_answer: Any) -> str:
    """``final_answer[0]`` with every ``$`` removed.

    The Qwen2.5-Math harness does ``final_answer[0].strip("$")`` and its ``strip_string`` later drops every
    remaining ``$``; removing them all here gives the same gold, and keeps multi-part answers such as
    ``$69$,$84$`` readable (``69,84`` rather than ``69$,$84``).
    """
    if isinstance(final_answer, str) or not final_answer:
        raise ValueError("is not a non-empty list")
    return str(final_answer[0]).replace("$", "")


def _integer_gold(value: Any) -> str:
    """A number stored as a float (AMC23: ``27.0``) written as an integer (``27``); non-integers are an error."""
    number = float(value)
    if not number.is_integer():
        raise ValueError(f"is not an integer: {value!r}")
    return str(int(number))


def _gsm8k_gold(answer: Any) -> str:
    """The number after ``#### `` at the end of a GSM8K answer, thousands separators removed (``2,125`` -> ``2125``)."""
    text = str(answer)
    if "####" not in text:
        raise ValueError("has no '#### <answer>' line")
    return text.rsplit("####", 1)[1].strip().replace(",", "")


# ---------------------------------------------------------------------------------------------------------------
# Benchmark registry
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldMap:
    """Where one source keeps the id, the problem text and the raw gold, and how the raw gold becomes LaTeX.

    ``id_field=None`` means the source has no id: the 0-based row position is used instead.
    """

    id_field: str | None
    problem_field: str
    gold_field: str
    gold: Callable[[Any], str] = _as_text


@dataclass(frozen=True)
class HubSource:
    """A Hugging Face dataset: ``datasets.load_dataset(path, config, split=split)``, read through ``fields``."""

    path: str
    config: str | None
    split: str
    fields: FieldMap


@dataclass(frozen=True)
class BenchmarkSpec:
    """A benchmark: its record count, how to read its local jsonl, and its hub source (None if none is recorded)."""

    name: str
    count: int
    local: FieldMap
    hub: HubSource | None
    description: str


BENCHMARKS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in [
        BenchmarkSpec(
            "math500", 500,
            FieldMap("unique_id", "problem", "answer"),
            # Hub fields (problem, solution, answer, subject, level, unique_id) match the local file.
            HubSource("HuggingFaceH4/MATH-500", None, "test", FieldMap("unique_id", "problem", "answer")),
            "MATH500 (Lightman et al.'s 500-problem subset of the MATH test set); gold = answer",
        ),
        BenchmarkSpec(
            "minerva_math", 272,
            FieldMap("idx", "problem", "solution", _boxed_gold),
            # UNVERIFIED: math-ai/minervamath is a single test.jsonl; third-party code reads it as `question` plus
            # an already-extracted `answer` (no solution, no id), so ids there are row positions.
            HubSource("math-ai/minervamath", None, "test", FieldMap(None, "question", "answer")),
            "Minerva Math (MIT OCW quantitative problems); gold = last \\boxed{} of solution",
        ),
        BenchmarkSpec(
            "olympiadbench", 675,
            FieldMap("id", "question", "final_answer", _olympiad_gold),
            # The hub config is the same OpenBMB release the local file comes from (id, question, final_answer list,
            # ...); field names believed identical but not checked against the hub here.
            HubSource(
                "Hothan/OlympiadBench", "OE_TO_maths_en_COMP", "train",
                FieldMap("id", "question", "final_answer", _olympiad_gold),
            ),
            "OlympiadBench, open-ended text-only English competition maths (OE_TO_maths_en_COMP); "
            "gold = final_answer[0] without $",
        ),
        BenchmarkSpec(
            "aime24", 30,
            FieldMap("id", "problem", "answer"),
            # HuggingFaceH4/aime_2024: id, problem, solution, answer (string), url, year.
            HubSource("HuggingFaceH4/aime_2024", None, "train", FieldMap("id", "problem", "answer")),
            "AIME 2024 (I and II); gold = answer",
        ),
        BenchmarkSpec(
            "amc23", 40,
            FieldMap("id", "problem", "answer", _integer_gold),
            # UNVERIFIED: third-party code reads math-ai/amc23 as `question` + `answer`; whether it has an `id` column
            # is unknown, so ids there are row positions. The answer may be a float (27.0) as locally.
            HubSource("math-ai/amc23", None, "test", FieldMap(None, "question", "answer", _integer_gold)),
            "AMC 2023 (the 40-problem set used by Qwen2.5-Math); gold = answer as an integer",
        ),
        BenchmarkSpec(
            "aime25", 30,
            FieldMap(None, "question", "answer"),
            None,  # SOURCES.md records no hub dataset for it; local only.
            "AIME 2025 (not in the paper); gold = answer",
        ),
        BenchmarkSpec(
            "gsm8k", 1319,
            FieldMap("idx", "question", "answer", _gsm8k_gold),
            # openai/gsm8k (main): question, answer; no idx column, so ids there are row positions (= local idx).
            HubSource("openai/gsm8k", "main", "test", FieldMap(None, "question", "answer", _gsm8k_gold)),
            "GSM8K test set (not in the paper); gold = number after ####, commas removed",
        ),
        BenchmarkSpec(
            "math_full_test", 5000,
            FieldMap("idx", "problem", "solution", _boxed_gold),
            # DigitalLearningGmbH/MATH-lighteval: problem, level, solution, type; no idx, so ids are row positions.
            HubSource(
                "DigitalLearningGmbH/MATH-lighteval", None, "test",
                FieldMap(None, "problem", "solution", _boxed_gold),
            ),
            "the full 5,000-problem MATH test set (what the original DFT code called math500); "
            "gold = last \\boxed{} of solution",
        ),
    ]
}  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------------------


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
    spec = _spec(name)
    if source == "local":
        path = (Path(data_dir) if data_dir is not None else default_data_dir()) / name / "test.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"no benchmark file {path} (set data_dir or ${DATA_DIR_ENV}, or use source='hub')")
        records = list(_read_jsonl(path))
        _check_count(spec, len(records), f"file {path}")  # before the fields: a wrong file may lack them
        return _to_problems(records, str(path), "line", spec.local)
    if source == "hub":
        return _load_hub(spec)
    raise ValueError(f"unknown source {source!r}; expected 'local' or 'hub'")


def load_jsonl_problems(path: str | os.PathLike) -> list[Problem]:
    """Load any jsonl of ``id``, ``problem``, ``answer`` records (no count check; ids must be unique)."""
    path = Path(path)
    return _to_problems(_read_jsonl(path), str(path), "line", FieldMap("id", "problem", "answer"))


def _spec(name: str) -> BenchmarkSpec:
    """The registry entry for ``name``; an unknown name is an error listing the known ones."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}") from None


def _load_hub(spec: BenchmarkSpec) -> list[Problem]:
    """Load ``spec`` with ``datasets.load_dataset`` and map its rows through the hub field mapping."""
    if spec.hub is None:
        raise ValueError(f"benchmark {spec.name!r} has no hub source recorded; load it with source='local'")
    import datasets

    hub = spec.hub
    rows = datasets.load_dataset(hub.path, hub.config, split=hub.split)
    where = f"hub dataset {hub.path}" + (f" ({hub.config})" if hub.config else "") + f" split {hub.split}"
    _check_count(spec, len(rows), where)
    return _to_problems(enumerate(rows), where, "row", hub.fields)


def _read_jsonl(path: Path) -> Iterable[tuple[int, dict]]:
    """Yield ``(line_number, record)`` for every non-blank line (1-based numbers, as an editor shows them)."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise BenchmarkDataError(f"{path}: line {number}: invalid JSON ({err.msg})") from None
            if not isinstance(record, dict):
                raise BenchmarkDataError(f"{path}: line {number}: expected a JSON object, got {type(record).__name__}")
            yield number, record


def _to_problems(rows: Iterable[tuple[int, Any]], where: str, unit: str, fields: FieldMap) -> list[Problem]:
    """Map ``(position, row)`` pairs through ``fields``; refuse duplicate ids, naming both positions.

    ``unit`` is ``"line"`` (positions are 1-based file lines) or ``"row"`` (0-based dataset rows).
    """
    problems: list[Problem] = []
    first_seen: dict[str, int] = {}
    for index, (position, row) in enumerate(rows):
        problem = _to_problem(row, index, f"{where}: {unit} {position}", fields)
        if problem.id in first_seen:
            raise BenchmarkDataError(
                f"{where}: {unit} {position}: duplicate id {problem.id!r} (first at {unit} {first_seen[problem.id]})"
            )
        first_seen[problem.id] = position
        problems.append(problem)
    return problems


def _to_problem(row: Any, index: int, where: str, fields: FieldMap) -> Problem:
    """One row as a Problem; ``index`` (0-based record position) is the id when the source has none."""
    problem_id = str(index) if fields.id_field is None else str(_field(row, fields.id_field, where))
    problem = str(_field(row, fields.problem_field, where)).strip()
    raw_gold = _field(row, fields.gold_field, where)
    try:
        gold = fields.gold(raw_gold).strip()
    except (TypeError, ValueError) as err:
        raise BenchmarkDataError(f"{where}: field {fields.gold_field!r} {err}") from None
    for field, value in ((fields.problem_field, problem), (fields.gold_field, gold)):
        if not value:
            raise BenchmarkDataError(f"{where}: field {field!r} is empty")
    return Problem(problem_id, problem, gold)


def _field(row: Any, field: str, where: str) -> Any:
    """``row[field]``; a missing or null field is an error naming the place and the field."""
    value = row.get(field) if hasattr(row, "get") else None
    if value is None:
        raise BenchmarkDataError(f"{where}: missing field {field!r}")
    return value


def _check_count(spec: BenchmarkSpec, actual: int, where: str) -> None:
    """Refuse a source whose record count is not the benchmark's, suggesting the benchmark(s) it may really be."""
    if actual == spec.count:
        return
    message = f"{where} has {actual} records, but benchmark {spec.name!r} has {spec.count}"
    others = [other.name for other in BENCHMARKS.values() if other.count == actual and other.name != spec.name]
    if others:
        message += f"; a {actual}-record file looks like {' or '.join(others)} (load it under that name)"
    if spec.name == "math500" and "math_full_test" in others:
        message += ". The original DFT code evaluated the full 5,000-problem MATH test set under the name 'math500'"
    raise BenchmarkDataError(message)
