r"""Problems and their gold answers: one place for reading them, for training data and for evaluation alike.

Everything that turns stored rows into (problem, gold answer) goes through here, so the data preparations
(``dft.data``), the benchmarks (``dft.eval.benchmarks``), rejection sampling and the RL prompts parse the same
gold the same way, by construction:

- **Rows** (:func:`read_rows`): a local ``.jsonl`` (positions are 1-based file lines), ``.parquet`` (0-based
  rows), or a hub dataset (:class:`HubSource`, 0-based rows). A jsonl line that is not a JSON object is kept as
  a :class:`BadRow` for the reader's policy (skip it, or stop naming it). ``Rows.label(i)`` is where a person
  finds row ``i``: ``"data.jsonl: line 12"``.
- **Fields** (:func:`text_field`): a missing, null or blank field is a :class:`BadRow` naming the field.
- **Golds** (:data:`GOLD_PARSERS`): how a raw stored answer becomes the LaTeX gold: as written (``text``), the
  last ``\boxed{}`` of a worked solution (``boxed``; :func:`last_boxed`), OlympiadBench's ``final_answer``
  list (``olympiad``), an integer stored as a float (``integer``, AMC23's ``27.0``), the number after GSM8K's
  ``####`` (``gsm8k``). Golds are whitespace-stripped and otherwise kept as written (normalising is the
  grader's job).
- **A problem back from a stored row** (:func:`problem_of_row`, for rejection sampling and RL prompts): the
  gold is the row's ``gold`` (the files ``dft.data`` writes), else its ``answer`` (benchmark and hub files),
  else the last ``\boxed{}`` of its ``solution``; the problem is its ``problem``, else the user turn of its
  ``messages`` read back by the one rule of :func:`problem_from_user_turn`: in the ``chat`` format the user turn
  must be the chat-cot message (problem, newline, CoT instruction) and the problem is what precedes the
  instruction; in the ``official`` format (recorded in the parquet's metadata, ``dft.data.training_format``) the user
  turn is
  the bare problem. Anything else is a bad row, never a silently different prompt.

Nothing heavy is imported here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dft.models.prompts import problem_of_chat_cot

BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


@dataclass(frozen=True)
class Problem:
    """One problem: a unique id, the problem text, and the gold answer as a LaTeX string."""

    id: str
    problem: str
    gold: str


class BadRow(ValueError):
    """One row cannot be used. ``key`` is the reason as a data preparation's report counts it; ``field_name`` is
    the offending field, or None when the row as a whole is unreadable (a broken jsonl line)."""

    def __init__(self, field_name: str | None, reason: str, key: str):
        super().__init__(f"field {field_name!r} {reason}" if field_name else f"the {reason}")
        self.field_name, self.reason, self.key = field_name, reason, key


class SourceError(ValueError):
    """A file or hub dataset cannot be read as asked (missing, unreachable, wrong kind); the message says which."""


# ---------------------------------------------------------------------------------------------------------------
# Golds
# ---------------------------------------------------------------------------------------------------------------


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` or ``\\fbox{...}`` (braces balanced), or of ``\\boxed 5``; else None.

    A last box left open (a truncated response) gives None: the model gave no final answer, whatever it boxed
    before.
    """
    starts = [m.end() for m in BOX_RE.finditer(text)]
    if not starts:
        return None
    after = text[starts[-1] :]
    rest = after.lstrip(" \t")
    if rest.startswith("{"):
        depth = 0
        for brace in re.finditer(r"(?<!\\)[{}]", rest):
            depth += 1 if brace.group() == "{" else -1
            if depth == 0:
                return rest[1 : brace.start()].strip()
        return None
    bare = re.match(r"[^\s$]+", rest) if len(rest) < len(after) else None  # ``\boxed 5``: one TeX token
    return bare.group().rstrip(".") if bare else None


def boxed_gold(solution: Any) -> str:
    r"""The last ``\boxed{}`` of a worked solution (MATH, Minerva, NuminaMath); none, or an empty one, is an error."""
    gold = last_boxed(str(solution))
    if not gold:
        raise ValueError("has no \\boxed{} answer")
    return gold


def olympiad_gold(final_answer: Any) -> str:
    """``final_answer[0]`` with every ``$`` removed.

    The Qwen2.5-Math harness does ``final_answer[0].strip("$")`` and its ``strip_string`` later drops every
    remaining ``$``; removing them all here gives the same gold, and keeps multi-part answers such as
    ``$69$,$84$`` readable (``69,84`` rather than ``69$,$84``).
    """
    if isinstance(final_answer, str) or not final_answer:
        raise ValueError("is not a non-empty list")
    return str(final_answer[0]).replace("$", "")


def integer_gold(value: Any) -> str:
    """A number stored as a float (AMC23: ``27.0``) written as an integer (``27``); non-integers are an error."""
    number = float(value)
    if not number.is_integer():
        raise ValueError(f"is not an integer: {value!r}")
    return str(int(number))


def gsm8k_parts(answer: Any) -> tuple[str, str]:
    """(worked solution, gold) of a GSM8K answer: the number after its ``####``, thousands separators removed
    (``2,125`` -> ``2125``)."""
    body, marker, final = str(answer).rpartition("####")
    gold = final.strip().replace(",", "")
    if not marker or not gold:
        raise ValueError("has no '#### <answer>' line")
    return body.strip(), gold


def gsm8k_gold(answer: Any) -> str:
    """The gold of a GSM8K answer (see :func:`gsm8k_parts`)."""
    return gsm8k_parts(answer)[1]


GOLD_PARSERS: dict[str, Callable[[Any], str]] = {
    "text": str, "boxed": boxed_gold, "olympiad": olympiad_gold, "integer": integer_gold, "gsm8k": gsm8k_gold,
}  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# Fields
# ---------------------------------------------------------------------------------------------------------------


def field_value(row: Any, name: str) -> Any:
    """``row[name]``; a missing or null field is a :class:`BadRow`."""
    value = row.get(name) if hasattr(row, "get") else None
    if value is None:
        raise BadRow(name, "is missing", f"missing field {name!r}")
    return value


def text_field(row: Any, name: str) -> str:
    """``row[name]`` as a whitespace-stripped string; a missing, null or blank field is a :class:`BadRow`."""
    text = str(field_value(row, name)).strip()
    if not text:
        raise BadRow(name, "is empty", f"empty field {name!r}")
    return text


def raw_text_field(row: Any, name: str) -> str:
    """``row[name]`` exactly as read (the official prep strips nothing); missing, null or blank is a BadRow."""
    text_field(row, name)
    return str(row[name])


def gold_field(row: Any, name: str, parser: str = "text") -> str:
    """The gold parsed from ``row[name]`` by ``GOLD_PARSERS[parser]``; an unparsable or empty one is a BadRow."""
    raw = field_value(row, name)
    try:
        gold = GOLD_PARSERS[parser](raw).strip()
    except (TypeError, ValueError) as err:
        raise BadRow(name, str(err), f"field {name!r} {str(err).split(':')[0]}") from None
    if not gold:
        raise BadRow(name, "is empty", f"empty field {name!r}")
    return gold


@dataclass(frozen=True)
class FieldMap:
    """Where one source keeps the id, the problem and the raw gold, and which gold parser reads it.

    ``id_field=None``: the source has no id; the row's 0-based index is used instead.
    """

    id_field: str | None
    problem_field: str
    gold_field: str
    gold: str = "text"

    def problem(self, row: Any, index: int) -> Problem:
        """Row ``index`` as a Problem; a missing or empty field, or a gold that does not parse, is a BadRow."""
        problem_id = str(index) if self.id_field is None else str(field_value(row, self.id_field))
        return Problem(problem_id, text_field(row, self.problem_field), gold_field(row, self.gold_field, self.gold))


# ---------------------------------------------------------------------------------------------------------------
# A problem back from a stored row
# ---------------------------------------------------------------------------------------------------------------


def problem_from_user_turn(content: str, fmt: str = "chat") -> str:
    """The problem inside a prepared row's user turn: the chat-cot message minus its instruction (``chat``), or
    the turn itself (``official``: the bare problem). A ``chat`` turn that is not a chat-cot message is a BadRow."""
    problem = content if fmt == "official" else problem_of_chat_cot(content) or ""
    if not problem.strip():
        reason = "has a user turn that is not a chat-cot prompt (problem, newline, CoT instruction)"
        if fmt == "official":
            reason = "has an empty user turn"
        raise BadRow("messages", reason, f"user turn is not a {fmt} prompt")
    return problem


def user_turn_of(messages) -> str:
    """The content of the first user message of a stored conversation; none is a BadRow."""
    turns = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"] if messages is not None else []
    if not turns:
        raise BadRow("messages", "has no user turn", "no user turn in 'messages'")
    return str(turns[0].get("content") or "")


def gold_of_row(row: Any) -> tuple[str, str]:
    r"""(gold, field it came from): ``gold``, else ``answer``, else the last ``\boxed{}`` of ``solution``."""
    for name in ("gold", "answer"):
        if row.get(name) is not None:
            return gold_field(row, name), name
    if row.get("solution") is not None:
        return gold_field(row, "solution", "boxed"), "solution"
    raise BadRow("gold", "is missing (nor is there an 'answer' or a 'solution')", "missing field 'gold'")


def problem_of_row(row: Any, fmt: str = "chat") -> tuple[str, str, tuple[str, str]]:
    """(problem, gold, (problem field, gold field)) of a stored row: its ``problem``, else the user turn of its
    ``messages`` read in data format ``fmt`` (:func:`problem_from_user_turn`); the gold by :func:`gold_of_row`.
    ``problem`` wins over ``messages``: raw NuminaMath-CoT rows carry both, and their messages are not chat-cot."""
    if row.get("problem") is None and "messages" in row:
        problem, problem_field = problem_from_user_turn(user_turn_of(row["messages"]), fmt), "messages"
    else:
        problem, problem_field = text_field(row, "problem"), "problem"
    gold, gold_source = gold_of_row(row)
    return problem, gold, (problem_field, gold_source)


# ---------------------------------------------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HubSource:
    """A hub dataset: ``datasets.load_dataset(path, config, split=split)``."""

    path: str
    config: str | None
    split: str

    def __str__(self) -> str:
        return f"hub dataset {self.path}" + (f" ({self.config})" if self.config else "") + f" split {self.split}"


@dataclass
class Rows:
    """Raw rows with a human position for each: ``label(i)`` is ``"<where>: line 12"`` or ``"<where>: row 11"``."""

    rows: Sequence[Any]
    where: str
    unit: str
    positions: list[int] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def position(self, index: int) -> int:
        return self.positions[index] if self.positions is not None else index

    def label(self, index: int) -> str:
        return f"{self.where}: {self.unit} {self.position(index)}"

    def strict(self, error: type[Exception] = SourceError) -> Rows:
        """Itself, after raising ``error`` at the first unreadable row (a reader without a skip policy)."""
        for index, row in enumerate(self.rows):
            if isinstance(row, BadRow):
                raise error(f"{self.label(index)}: {row}")
        return self


class _ParquetRows(Sequence):
    """Rows of a pyarrow table as dicts, converted one at a time (a full ``to_pylist`` of 860k rows is gigabytes)."""

    def __init__(self, table):
        self.table = table

    def __len__(self) -> int:
        return self.table.num_rows

    def __getitem__(self, index: int) -> dict:
        return self.table.slice(index, 1).to_pylist()[0]


def _jsonl_record(line: str) -> dict | BadRow:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        return BadRow(None, f"line is not valid JSON ({err.msg})", "invalid JSON")
    if not isinstance(record, dict):
        return BadRow(None, f"line is a JSON {type(record).__name__}, not an object", "not a JSON object")
    return record


def read_jsonl(path: str | Path, limit: int | None = None) -> Rows:
    """Every non-blank line of a jsonl (the first ``limit``); an unreadable line becomes a BadRow."""
    rows, positions = [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if limit is not None and len(rows) >= limit:
                break
            if line.strip():
                rows.append(_jsonl_record(line))
                positions.append(number)
    return Rows(rows, str(path), "line", positions)


def read_parquet(path: str | Path, limit: int | None = None) -> Rows:
    """A parquet file's rows (0-based), the first ``limit`` of them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except pa.ArrowInvalid as err:
        raise SourceError(f"{path}: not a parquet file ({err})") from None
    return Rows(_ParquetRows(table if limit is None else table.slice(0, limit)), str(path), "row")


def read_hub(hub: HubSource, limit: int | None = None) -> Rows:
    """The hub dataset through ``datasets.load_dataset`` (``limit`` becomes a ``split[:limit]`` slice)."""
    import datasets

    split = hub.split if limit is None else f"{hub.split}[:{limit}]"
    return Rows(datasets.load_dataset(hub.path, hub.config, split=split), str(hub), "row")


def read_rows(source: str | Path | HubSource, limit: int | None = None) -> Rows:
    """The rows of a local ``.jsonl``/``.parquet`` file or of a hub dataset."""
    if isinstance(source, HubSource):
        return read_hub(source, limit)
    path = Path(source)
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    return read_parquet(path, limit) if path.suffix == ".parquet" else read_jsonl(path, limit)


def file_format_of(path: str | Path) -> str:
    """The data format a prepared parquet records (``dft.data.training_format``); ``chat`` for any other file."""
    if Path(path).suffix != ".parquet":
        return "chat"
    from dft.data.training_format import file_format

    return file_format(path) or "chat"


def to_problems(rows: Rows, convert: Callable[[Any, int], Problem], error: type[Exception] = SourceError) -> list:
    """Every row as a Problem by ``convert(row, index)`` (``FieldMap.problem``); a bad row or a duplicate id is
    ``error`` naming the position(s)."""
    problems: list[Problem] = []
    first_seen: dict[str, int] = {}
    for index in range(len(rows)):
        try:
            row = rows.rows[index]
            if isinstance(row, BadRow):
                raise row
            problem = convert(row, index)
        except BadRow as bad:
            raise error(f"{rows.label(index)}: {bad}") from None
        if problem.id in first_seen:
            raise error(f"{rows.label(index)}: duplicate id {problem.id!r} (first at {rows.unit} "
                        f"{first_seen[problem.id]})")  # fmt: skip
        first_seen[problem.id] = rows.position(index)
        problems.append(problem)
    return problems


def read_problems(path: str | Path, limit: int | None = None) -> list[Problem]:
    """The problems of a stored file (a prepared parquet, verl's RL parquet of ``dft.rl.rl_data``, a jsonl of ``id``,
    ``problem``, ``answer``, ...), by :func:`problem_of_row` in the format the file records; the id is the row's
    ``id``, else its position. Strict: a bad row or a repeated id is a SourceError naming the file and row."""
    fmt = file_format_of(path)

    def convert(row, index: int) -> Problem:
        if "extra_info" in row and "reward_model" in row:  # an RL row: the input row's id, problem and gold
            info, gold = row["extra_info"], str(row["reward_model"]["ground_truth"])
            return Problem(str(info.get("source_id") or info["id"]), str(info["problem"]), gold)
        problem, gold, _ = problem_of_row(row, fmt)
        return Problem(str(row["id"]) if row.get("id") is not None else str(index), problem, gold)

    return to_problems(read_rows(path, limit), convert)
