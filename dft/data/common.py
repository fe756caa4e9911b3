r"""Shared machinery of the supervised data preparations: read, validate, select, split, write, report.

A dataset module (``dft.data.gsm8k`` ...) is a :class:`DatasetSpec`: where its hub copy lives and how one raw row
becomes an :class:`Example` (user message, assistant solution, gold answer). Everything else is here:

- **Input** (:func:`read_input`): a local ``.jsonl`` (positions are 1-based file lines) or ``.parquet`` (0-based
  rows), or the hub through ``datasets.load_dataset`` (0-based rows); ``limit`` reads only the first rows.
- **Selection** (:func:`select_and_split`): rows are visited in file order (``first``) or in a seeded permutation
  (``random``, ``numpy.random.RandomState(seed)``, whose stream numpy keeps fixed across versions). The train
  split is the first ``n`` rows of that order that pass validation, so it is exactly ``n`` rows and does not depend
  on ``val_size``; the validation split is then drawn from the rows not visited, in a second seeded permutation.
  Without ``n``, validation is drawn first and every other row is train.
- **Validation**: a missing or empty field, or a solution without the gold answer the dataset needs, is a
  :class:`BadRow`. Policy ``error`` raises :class:`DataPrepError` naming the file (or hub dataset), the
  line/row and the field; ``skip`` counts it by reason in the report. Only visited rows are validated; the
  report's counts always add up: ``input_rows = train + val + skipped + unselected``.
- **Length** (with ``max_length`` and a tokenizer) is measured as training tokenizes the row in its format
  (``dft.formats``): in ``chat``, the whole conversation in the chat template (no generation prompt); in
  ``official``, prompt + solution + eos. Over-length rows follow their own policy, ``over_length``: ``skip``
  (default: counted, and every one listed in the report), ``truncate`` (kept; training cuts them on the right,
  as the official trainer did; a row whose first trained token lies beyond ``max_length`` has no loss token left
  and is a bad row) or ``error``.
- **Format** (``format``, see ``dft.formats``): ``chat`` stores the chat-cot user message; ``official`` stores
  the bare problem and the solution exactly as read (a dataset spec with an ``official`` converter; NuminaMath-CoT
  keeps rows without a ``\boxed{}`` there, as the official prep did, with an empty ``answer``). With
  ``--selection first`` and nothing refused, the train split is exactly input rows ``0..n-1``.
- **Output** (:func:`write_splits`, :func:`write_report`): ``train.parquet``, ``val.parquet`` (only when
  ``val_size > 0``) with columns ``messages``, ``id``, ``answer``, ``source``, and ``report.json``, each written to
  a temp file in the same directory and moved into place with ``os.replace``. The old report is removed first and
  the new one written last, so a directory with a ``report.json`` is a finished preparation.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from dft.cli import DefaultsHelpFormatter, positive_int
from dft.eval.answers import last_boxed
from dft.eval.prompts import get_template
from dft.formats import FORMATS, encode_official, official_template, prompt_lengths, with_format
from dft.io import atomic_write

CHUNK = 512  # rows validated (and tokenized) per batch
EXAMPLES_PER_REASON = 5  # positions of skipped rows kept in the report, per reason
OVER_LENGTH = "longer than max_length"


class DataPrepError(ValueError):
    """The input cannot become the requested training data (a bad row under policy ``error``, too few rows...)."""


class BadRow(ValueError):
    """One row cannot become a training example. ``key`` is the reason as counted in the report.

    ``field_name`` is the offending field, or None when the row as a whole is unreadable (a broken jsonl line).
    """

    def __init__(self, field_name: str | None, reason: str, key: str):
        super().__init__(f"field {field_name!r} {reason}" if field_name else f"the {reason}")
        self.field_name, self.reason, self.key = field_name, reason, key


@dataclass(frozen=True)
class Example:
    """One training conversation: the user message, the assistant turn, the gold answer, and where it came from."""

    user: str
    assistant: str
    answer: str
    source: str
    id: str = ""
    tokens: int | None = None  # chat-template token count, when a tokenizer was given

    def messages(self) -> list[dict]:
        """The ``messages`` list verl's ``MultiTurnSFTDataset`` reads."""
        return [{"role": "user", "content": self.user}, {"role": "assistant", "content": self.assistant}]


@dataclass(frozen=True)
class HubSource:
    """``datasets.load_dataset(path, config, split=split)``."""

    path: str
    config: str | None
    split: str


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset preparation: its name (ids are ``<name>-<row index>``), hub source and row converter.

    ``convert(row, extra)`` returns an :class:`Example` or raises :class:`BadRow`; ``extra`` holds the values of
    the dataset's own CLI options, which ``add_arguments`` declares. ``official(row)`` converts a row for the
    official format (``--format official``), where the dataset supports it. A preparation whose rows are not SFT
    conversations (``dft.data.rl``) brings its own ``validator`` (a :class:`Validator` subclass) and
    ``write(rows, split, path)`` parquet writer.
    """

    name: str
    description: str
    hub: HubSource
    convert: Callable[[dict, dict], Example]
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    validator: type | None = None
    write: Callable[[list, str, str], None] | None = None
    official: Callable[[dict], Example] | None = None


@dataclass
class PrepOptions:
    """What to prepare; the CLI flags of the same names (``--on-bad-row`` is ``on_bad_row``)."""

    out: Path
    source: str = "hub"
    input: Path | None = None
    hub_config: str | None = None
    limit: int | None = None
    n: int | None = None
    seed: int = 0
    selection: str = "random"
    val_size: int = 0
    max_length: int | None = None
    tokenizer: str | None = None
    on_bad_row: str = "error"
    over_length: str = "skip"
    format: str = "chat"
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------------
# Helpers for converters
# ---------------------------------------------------------------------------------------------------------------


def text_field(row: dict, name: str) -> str:
    """``row[name]`` as a whitespace-stripped string; a missing, null or blank field is a :class:`BadRow`."""
    value = row.get(name) if hasattr(row, "get") else None
    if value is None:
        raise BadRow(name, "is missing", f"missing field {name!r}")
    text = str(value).strip()
    if not text:
        raise BadRow(name, "is empty", f"empty field {name!r}")
    return text


def raw_text_field(row: dict, name: str) -> str:
    """``row[name]`` exactly as read (the official prep strips nothing); missing, null or blank is a BadRow."""
    text_field(row, name)
    return str(row[name])


def boxed_answer(solution: str, name: str) -> str:
    r"""The last ``\boxed{}`` of ``solution`` (the evaluation harness's rule); none, or an empty one, is a BadRow."""
    answer = last_boxed(solution)
    if answer is None or not answer.strip():
        raise BadRow(name, "has no \\boxed{} answer", f"no \\boxed{{}} answer in {name!r}")
    return answer.strip()


def chat_cot_user(problem: str) -> str:
    """The user message of the evaluation's ``chat-cot`` prompt: problem + newline + the CoT instruction."""
    return get_template("chat-cot").text.format(input=problem)


# ---------------------------------------------------------------------------------------------------------------
# Input
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class InputRows:
    """Raw rows with a human position for each: ``label(i)`` is ``"<where>: line 12"`` or ``"...: row 11"``."""

    rows: Sequence[Any]
    where: str
    unit: str
    positions: list[int] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def label(self, index: int) -> str:
        position = self.positions[index] if self.positions is not None else index
        return f"{self.where}: {self.unit} {position}"


class _ParquetRows(Sequence):
    """Rows of a pyarrow table as dicts, converted one at a time (a full ``to_pylist`` of 860k rows is gigabytes)."""

    def __init__(self, table):
        self.table = table

    def __len__(self) -> int:
        return self.table.num_rows

    def __getitem__(self, index: int) -> dict:
        return self.table.slice(index, 1).to_pylist()[0]


def _read_jsonl(path: Path, limit: int | None) -> InputRows:
    """Every non-blank line of a jsonl; an unreadable line becomes a BadRow (so the row policy applies to it)."""
    rows, positions = [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if limit is not None and len(rows) >= limit:
                break
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                record = BadRow(None, f"line is not valid JSON ({err.msg})", "invalid JSON")
            if not isinstance(record, dict | BadRow):
                record = BadRow(None, f"line is a JSON {type(record).__name__}, not an object", "not a JSON object")
            rows.append(record)
            positions.append(number)
    return InputRows(rows, str(path), "line", positions)


def _read_parquet(path: Path, limit: int | None) -> InputRows:
    """A parquet file's rows (0-based)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    if limit is not None:
        table = table.slice(0, limit)
    return InputRows(_ParquetRows(table), str(path), "row")


def _read_hub(hub: HubSource, limit: int | None) -> InputRows:
    """The hub dataset through ``datasets.load_dataset``; ``limit`` becomes a ``split[:limit]`` slice."""
    import datasets

    split = hub.split if limit is None else f"{hub.split}[:{limit}]"
    where = f"hub dataset {hub.path}" + (f" ({hub.config})" if hub.config else "") + f" split {hub.split}"
    try:
        rows = datasets.load_dataset(hub.path, hub.config, split=split)
    except (ConnectionError, OSError) as err:  # no network, no such dataset or config
        raise DataPrepError(f"cannot load {where}: {err} (or pass a local copy with --input)") from err
    return InputRows(rows, where, "row")


def read_input(spec: DatasetSpec, opts: PrepOptions) -> InputRows:
    """The raw rows ``opts`` points at: a local jsonl/parquet file or the spec's hub dataset."""
    if opts.source == "hub":
        hub = spec.hub if opts.hub_config is None else HubSource(spec.hub.path, opts.hub_config, spec.hub.split)
        return _read_hub(hub, opts.limit)
    if opts.source != "local":
        raise DataPrepError(f"unknown source {opts.source!r}; expected 'hub' or 'local'")
    if opts.input is None or not Path(opts.input).is_file():
        raise DataPrepError(f"source 'local' needs an input file; {opts.input} is not one")
    path = Path(opts.input)
    if path.suffix == ".parquet":
        return _read_parquet(path, opts.limit)
    return _read_jsonl(path, opts.limit)


# ---------------------------------------------------------------------------------------------------------------
# Validation and selection
# ---------------------------------------------------------------------------------------------------------------


class Validator:
    """Turns row indices into Examples or BadRows, applies the bad-row policy and counts what it skips."""

    def __init__(self, spec: DatasetSpec, inputs: InputRows, opts: PrepOptions, tokenizer=None):
        self.spec, self.inputs, self.opts, self.tokenizer = spec, inputs, opts, tokenizer
        self.skipped: Counter = Counter()
        self.skipped_examples: dict[str, list[str]] = {}
        self.over_length_rows: list[str] = []
        self.template = official_template(tokenizer) if tokenizer is not None and opts.format == "official" else None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        """Release what the checks hold (nothing here; a subclass's grader workers, say)."""

    def check(self, indices: Sequence[int]) -> list[Example | BadRow]:
        """Convert a batch of rows, then measure the token lengths of the good ones (batched tokenizer calls)."""
        results = [self._convert(i) for i in indices]
        if self.tokenizer is None:
            return results
        good = [k for k, r in enumerate(results) if isinstance(r, Example)]
        for k, (prompt, total) in zip(good, self.lengths([results[k] for k in good])):
            results[k] = self._within_length(replace(results[k], tokens=total), prompt)
        return results

    def lengths(self, examples: list[Example]) -> list[tuple[int | None, int]]:
        """(tokens before the first trained token, all tokens) of each example, as training tokenizes it."""
        if self.opts.format == "official":
            encoded = encode_official(self.tokenizer, [(e.user, e.assistant) for e in examples], self.template)
            return [(len(prompt), len(prompt) + len(target)) for prompt, target in encoded]
        conversations = [e.messages() for e in examples]
        totals = token_lengths(self.tokenizer, conversations)
        # where training starts only matters for rows kept over-long
        truncate = self.opts.over_length == "truncate"
        prompts = prompt_lengths(self.tokenizer, conversations, "chat") if truncate else [None] * len(totals)
        return list(zip(prompts, totals))

    def _within_length(self, example: Example, prompt: int | None) -> Example | BadRow:
        limit, total = self.opts.max_length, example.tokens
        if limit is None or total <= limit:
            return example
        if self.opts.over_length != "truncate":
            return BadRow("messages", f"is {total} tokens in the {self.opts.format} format, more than --max-length "
                          f"{limit}", OVER_LENGTH)  # fmt: skip
        if prompt is None or prompt >= limit:
            return BadRow("messages", f"has no loss token within --max-length {limit} (the prompt alone is {prompt} "
                          "tokens)", "no loss token within max_length")  # fmt: skip
        return example

    def _convert(self, index: int) -> Example | BadRow:
        row = self.inputs.rows[index]
        if isinstance(row, BadRow):
            return row
        try:
            official = self.opts.format == "official"
            example = self.spec.official(row) if official else self.spec.convert(row, self.opts.extra)
        except BadRow as bad:
            return bad
        return replace(example, id=f"{self.spec.name}-{index}")

    def reject(self, index: int, bad: BadRow) -> None:
        """Apply the policy to a bad row: raise (``error``) or count it (``skip``); over-length rows follow
        ``over_length`` and are all listed."""
        label = self.inputs.label(index)
        over_length = bad.key == OVER_LENGTH
        if (self.opts.over_length if over_length else self.opts.on_bad_row) == "error":
            flag = "--over-length skip" if over_length else "--on-bad-row skip"
            raise DataPrepError(f"{label}: {bad} (use {flag} to skip such rows and count them)")
        self.skipped[bad.key] += 1
        examples = self.skipped_examples.setdefault(bad.key, [])
        if len(examples) < EXAMPLES_PER_REASON:
            examples.append(f"{label}: {bad}")
        if over_length:
            self.over_length_rows.append(label)


def token_lengths(tokenizer, conversations: list[list[dict]]) -> list[int]:
    """Token count of each conversation rendered whole by the chat template (what verl's SFT dataset trains on)."""
    if not conversations:
        return []
    texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=False) for c in conversations]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]]


def take(candidates: Sequence[int], need: int | None, validator: Validator) -> tuple[list[Example], int]:
    """Visit ``candidates`` in order until ``need`` good rows are found (all rows if None).

    Returns the good rows and how many candidates were visited; bad rows among them went through the policy.
    """
    accepted: list[Example] = []
    visited = 0
    while visited < len(candidates) and (need is None or len(accepted) < need):
        size = CHUNK if need is None else min(CHUNK, max(need - len(accepted), 16))
        chunk = list(candidates[visited : visited + size])
        for index, result in zip(chunk, validator.check(chunk)):
            if need is not None and len(accepted) == need:
                break
            visited += 1
            if isinstance(result, BadRow):
                validator.reject(index, result)
            else:
                accepted.append(result)
    return accepted, visited


def _permutation(items: Sequence[int], seed) -> list[int]:
    """``items`` in a seeded random order (numpy's legacy RandomState: its stream is frozen across versions)."""
    import numpy as np

    return [items[k] for k in np.random.RandomState(seed).permutation(len(items)).tolist()]


def _require(found: int, need: int, what: str, validator: Validator) -> None:
    """Refuse to write fewer rows than asked for."""
    if found < need:
        skipped = sum(validator.skipped.values())
        raise DataPrepError(f"{what}: asked for {need} rows, found only {found} usable ({skipped} skipped)")


def select_and_split(total: int, opts: PrepOptions, validator: Validator) -> tuple[list[Example], list[Example], int]:
    """(train, val, unselected row count), following the selection rules in the module docstring."""
    order = list(range(total)) if opts.selection == "first" else _permutation(range(total), opts.seed)
    val_seed = [1, opts.seed]  # a second stream, so val rows are random even under --selection first
    if opts.n is not None:
        train, visited = take(order, opts.n, validator)
        _require(len(train), opts.n, "--n", validator)
        rest = _permutation(order[visited:], val_seed)
        val, visited_val = take(rest, opts.val_size, validator) if opts.val_size else ([], 0)
        _require(len(val), opts.val_size, "--val-size", validator)
        return train, val, total - visited - visited_val
    candidates = _permutation(order, val_seed)
    val, visited_val = take(candidates, opts.val_size, validator) if opts.val_size else ([], 0)
    _require(len(val), opts.val_size, "--val-size", validator)
    seen = set(candidates[:visited_val])
    train, _ = take([i for i in order if i not in seen], None, validator)
    return train, val, 0


# ---------------------------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------------------------


def write_parquet(examples: list[Example], path: str, fmt: str = "chat") -> None:
    """The SFT parquet: ``messages`` (list of role/content structs), ``id``, ``answer``, ``source``; the schema
    metadata records the format (``dft.formats``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    schema = pa.schema(
        [("messages", pa.list_(message)), ("id", pa.string()), ("answer", pa.string()), ("source", pa.string())]
    )
    columns = {
        "messages": [e.messages() for e in examples],
        "id": [e.id for e in examples],
        "answer": [e.answer for e in examples],
        "source": [e.source for e in examples],
    }
    pq.write_table(with_format(pa.table(columns, schema=schema), fmt), path)


def write_splits(out: Path, train: list, val: list, write: Callable[[list, str, str], None] | None = None) -> None:
    """Write ``train.parquet`` and ``val.parquet`` (if any val rows), each atomically, after removing the old report.

    ``write(rows, split, path)`` writes one split (default: the SFT parquet). Without a report the directory reads
    as unfinished until :func:`write_report` lands the new one.
    """
    write = write or (lambda rows, split, path: write_parquet(rows, path))
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").unlink(missing_ok=True)
    atomic_write(out / "train.parquet", lambda tmp: write(train, "train", tmp))
    if val:
        atomic_write(out / "val.parquet", lambda tmp: write(val, "val", tmp))
    else:
        (out / "val.parquet").unlink(missing_ok=True)  # a stale split from an earlier run would not match


def write_report(out: Path, report: dict) -> None:
    """Write ``report.json`` atomically (the last file of a preparation)."""
    text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    atomic_write(out / "report.json", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _length_stats(examples: list[Example]) -> dict | None:
    """Max, mean and 99th percentile of the written rows' token lengths (None without a tokenizer)."""
    lengths = sorted(e.tokens for e in examples if e.tokens is not None)
    if not lengths:
        return None
    p99 = lengths[min(len(lengths) - 1, int(0.99 * len(lengths)))]
    return {"max": lengths[-1], "mean": round(sum(lengths) / len(lengths), 1), "p99": p99}


def build_report(spec: DatasetSpec, opts: PrepOptions, inputs: InputRows, splits, validator, seconds) -> dict:
    """The ``report.json`` record: what was read, chosen, skipped (by reason) and written, and with what options.

    ``splits`` is ``(train, val, unselected row count)`` from :func:`select_and_split`.
    """
    train, val, unselected = splits
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()}
    return {
        "dataset": spec.name,
        "description": spec.description,
        "source": opts.source,
        "input": inputs.where,
        "input_rows": len(inputs),
        "selection": opts.selection,
        "seed": opts.seed,
        "n": opts.n,
        "train_rows": len(train),
        "val_rows": len(val),
        "skipped_rows": sum(validator.skipped.values()),
        "unselected_rows": unselected,
        "skipped": dict(sorted(validator.skipped.items())),
        "skipped_examples": validator.skipped_examples,
        "format": opts.format,
        "over_length": {
            "policy": opts.over_length,
            "max_length": opts.max_length,
            "skipped_rows": validator.over_length_rows,
        },  # fmt: skip
        "token_lengths": _length_stats(train + val),
        "options": options,
        "seconds": round(seconds, 3),
        "rows_per_s": round((len(inputs) - unselected) / seconds, 1) if seconds > 0 else None,  # rows validated
    }


def check_options(opts: PrepOptions) -> None:
    """Refuse option values that cannot give usable training data."""
    if opts.max_length is not None and opts.tokenizer is None:
        raise DataPrepError("--max-length needs --tokenizer (the length is counted in the model's tokens)")
    for name, value, least in (("n", opts.n, 1), ("limit", opts.limit, 1), ("max-length", opts.max_length, 1)):
        if value is not None and value < least:
            raise DataPrepError(f"--{name} must be at least {least}, got {value}")
    if opts.val_size < 0:
        raise DataPrepError(f"--val-size must be at least 0, got {opts.val_size}")
    if opts.selection not in ("random", "first") or opts.on_bad_row not in ("error", "skip"):
        raise DataPrepError(f"unknown --selection {opts.selection!r} or --on-bad-row {opts.on_bad_row!r}")
    if opts.over_length not in ("skip", "truncate", "error") or opts.format not in FORMATS:
        raise DataPrepError(f"unknown --over-length {opts.over_length!r} or --format {opts.format!r}")


def prepare(spec: DatasetSpec, opts: PrepOptions) -> dict:
    """Read, validate, select and write one dataset as ``opts`` says; return the report (also in report.json)."""
    check_options(opts)
    if opts.format == "official" and spec.official is None:
        raise DataPrepError(f"{spec.name} has no official format (only a dataset the official code trained on)")
    start = time.perf_counter()
    inputs = read_input(spec, opts)
    tokenizer = None
    if opts.tokenizer is not None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(opts.tokenizer)
    with (spec.validator or Validator)(spec, inputs, opts, tokenizer) as validator:
        splits = select_and_split(len(inputs), opts, validator)
    write = spec.write or (lambda rows, split, path: write_parquet(rows, path, opts.format))
    write_splits(Path(opts.out), splits[0], splits[1], write)
    report = build_report(spec, opts, inputs, splits, validator, time.perf_counter() - start)
    write_report(Path(opts.out), report)
    return report


# ---------------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------------


def build_parser(spec: DatasetSpec) -> argparse.ArgumentParser:
    """The common CLI of every ``python -m dft.data.<name>``, plus the dataset's own options."""
    parser = argparse.ArgumentParser(
        prog=f"python -m dft.data.{spec.name}",
        description=spec.description,
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("--out", required=True, type=Path, help="writes OUT/train.parquet, val.parquet, report.json")
    parser.add_argument("--source", choices=["hub", "local"], help="default: local with --input, else hub")
    parser.add_argument("--input", type=Path, help="local .jsonl or .parquet with the hub dataset's fields")
    parser.add_argument("--hub-config", help=f"hub config (default: {spec.hub.config or 'none'})")
    parser.add_argument("--limit", type=positive_int, help="read only the first LIMIT input rows (quick runs, tests)")
    parser.add_argument("--n", type=positive_int, help="train rows to select (default: every row not in val)")
    parser.add_argument("--selection", choices=["random", "first"], default="random", help="which rows --n takes")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random selection and of the val split")
    parser.add_argument("--val-size", type=int, default=0, help="held-out validation rows (0: none)")
    parser.add_argument("--max-length", type=int, help="longest conversation in tokens (needs --tokenizer)")
    parser.add_argument("--tokenizer", help="tokenizer path or hub id whose chat template measures the length")
    parser.add_argument(
        "--on-bad-row",
        choices=["error", "skip"],
        default="error",
        help="a row with a missing field or no boxed answer: stop, or skip and count it",
    )
    parser.add_argument("--over-length", choices=["skip", "truncate", "error"], default="skip",
                        help="rows over --max-length: skip and list them (default), keep them for training to "
                        "truncate, or stop")  # fmt: skip
    parser.add_argument(
        "--format",
        choices=list(FORMATS),
        default="chat",
        help="chat: chat-cot user turn (default); official: the official DFT code's (dft.formats)",
    )
    if spec.add_arguments is not None:
        spec.add_arguments(parser)
    return parser


def options_from_args(args: argparse.Namespace) -> PrepOptions:
    """PrepOptions from parsed flags; flags a dataset added go to ``extra``."""
    names = {f.name for f in fields(PrepOptions)} - {"extra"}
    common = {k: v for k, v in vars(args).items() if k in names}
    if common["source"] is None:
        common["source"] = "local" if common["input"] is not None else "hub"
    return PrepOptions(**common, extra={k: v for k, v in vars(args).items() if k not in names})


def main_for(spec: DatasetSpec, argv: list[str] | None = None) -> dict:
    """CLI entry point of one dataset: prepare it and print a one-line summary; a data problem exits with status 1."""
    parser = build_parser(spec)
    opts = options_from_args(parser.parse_args(argv))
    if opts.source == "hub" and opts.input is not None:
        parser.error("--input is for --source local")
    try:
        report = prepare(spec, opts)
    except DataPrepError as err:
        parser.exit(1, f"error: {err}\n")
    skipped = ", ".join(f"{k}: {v}" for k, v in report["skipped"].items()) or "none"
    print(
        f"{spec.name}: {report['input_rows']} input rows -> {report['train_rows']} train, {report['val_rows']} val "
        f"in {opts.out} (skipped {report['skipped_rows']} [{skipped}], unselected {report['unselected_rows']}; "
        f"{report['seconds']:.1f} s)"
    )
    return report
