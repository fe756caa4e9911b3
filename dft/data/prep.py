r"""Shared machinery of the supervised data preparations: read, validate, select, split, write, report.

A dataset module (``dft.data.gsm8k`` ...) is a :class:`DatasetSpec`: where its hub copy lives and how one raw row
becomes an :class:`Example` (user message, assistant solution, gold answer). Everything else is shared:

- **Input**: rows, positions, fields and golds are read by :mod:`dft.data.problems`, the code that reads the
  benchmarks: a local ``.jsonl`` (positions are 1-based file lines) or ``.parquet`` (0-based rows), or the hub
  (0-based rows); ``limit`` reads only the first rows.
- **Validation and selection** (:mod:`dft.data.select`): the bad-row policy (``--on-bad-row error|skip``), the
  token-length policy (``--max-length --over-length``), and which rows make the train and validation splits
  (``--n --selection --seed --val-size``). The report's counts always add up:
  ``input_rows = train + val + skipped + unselected``.
- **Format** (``format``, see ``dft.data.training_format``): ``chat`` stores the chat-cot user message; ``official``
  stores
  the bare problem and the solution exactly as read (a dataset spec with an ``official`` converter; NuminaMath-CoT
  keeps rows without a ``\boxed{}`` there, as the official prep did, with an empty ``gold``). With
  ``--selection first`` and nothing refused, the train split is exactly input rows ``0..n-1``.
- **Output** (:func:`write_splits`, :func:`write_report`): ``train.parquet``, ``val.parquet`` (only when
  ``val_size > 0``) with columns ``messages``, ``id``, ``gold``, ``source``, and ``report.json``, each written to
  a temp file in the same directory and moved into place with ``os.replace``. The old report is removed first and
  the new one written last, so a directory with a ``report.json`` is a finished preparation.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from dft.core.args import REFUSED, DefaultsHelpFormatter, positive_int
from dft.core.io import atomic_write
from dft.data.problems import HubSource, Rows, SourceError, read_rows
from dft.data.select import DataPrepError, Validator, select_and_split
from dft.data.training_format import FORMATS, with_format

__all__ = ["DataPrepError", "DatasetSpec", "Example", "HubSource", "PrepOptions", "main_for"]


@dataclass(frozen=True)
class Example:
    """One training conversation: the user message, the assistant turn, the gold answer, and where it came from."""

    user: str
    assistant: str
    gold: str
    source: str
    id: str = ""
    tokens: int | None = None  # chat-template token count, when a tokenizer was given

    def messages(self) -> list[dict]:
        """The ``messages`` list verl's ``MultiTurnSFTDataset`` reads."""
        return [{"role": "user", "content": self.user}, {"role": "assistant", "content": self.assistant}]


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset preparation: its name (ids are ``<name>-<row index>``), hub source and row converter.

    ``convert(row, extra)`` returns an :class:`Example` or raises a ``dft.data.problems.BadRow``; ``extra`` holds the
    values of the dataset's own CLI options, which ``add_arguments`` declares. ``official(row)`` converts a row for the
    official format (``--format official``), where the dataset supports it. A preparation whose rows are not SFT
    conversations (``dft.rl.rl_data``) brings its own ``validator`` (a ``dft.data.select.Validator`` subclass) and
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


# ---------------------------------------------------------------------------------------------------------------
# Input
# ---------------------------------------------------------------------------------------------------------------


def read_input(spec: DatasetSpec, opts: PrepOptions) -> Rows:
    """The raw rows ``opts`` points at: a local jsonl/parquet file or the spec's hub dataset."""
    if opts.source not in ("hub", "local"):
        raise DataPrepError(f"unknown source {opts.source!r}; expected 'hub' or 'local'")
    if opts.source == "local" and opts.input is None:
        raise DataPrepError("source 'local' needs an input file (--input)")
    hub = spec.hub if opts.hub_config is None else HubSource(spec.hub.path, opts.hub_config, spec.hub.split)
    try:
        return read_rows(hub if opts.source == "hub" else opts.input, opts.limit)
    except SourceError as err:
        raise DataPrepError(f"--input {err}" if opts.source == "local" else str(err)) from None


# ---------------------------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------------------------


def write_parquet(examples: list[Example], path: str, fmt: str = "chat") -> None:
    """The SFT parquet: ``messages`` (list of role/content structs), ``id``, ``gold``, ``source``; the schema
    metadata records the format (``dft.data.training_format``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    schema = pa.schema(
        [("messages", pa.list_(message)), ("id", pa.string()), ("gold", pa.string()), ("source", pa.string())]
    )
    columns = {
        "messages": [e.messages() for e in examples],
        "id": [e.id for e in examples],
        "gold": [e.gold for e in examples],
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


def build_report(spec: DatasetSpec, opts: PrepOptions, inputs: Rows, splits, validator, seconds) -> dict:
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
        "duplicate_rows": len(validator.duplicates),  # rows whose problem an earlier row of the same split has
        "duplicate_examples": validator.duplicates[:5],
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
    """The common CLI of every ``python -m dft data <name>``, plus the dataset's own options."""
    parser = argparse.ArgumentParser(
        prog=f"python -m dft data {spec.name}",
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
        help="chat: chat-cot user turn (default); official: the official DFT code's (dft.data.training_format)",
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
    """CLI entry point of one dataset: prepare it and print a one-line summary; a data problem exits with status 2."""
    parser = build_parser(spec)
    opts = options_from_args(parser.parse_args(argv))
    if opts.source == "hub" and opts.input is not None:
        parser.error("--input is for --source local")
    try:
        report = prepare(spec, opts)
    except (DataPrepError, SourceError) as err:
        parser.exit(REFUSED, f"error: {err}\n")
    skipped = ", ".join(f"{k}: {v}" for k, v in report["skipped"].items()) or "none"
    print(
        f"{spec.name}: {report['input_rows']} input rows -> {report['train_rows']} train, {report['val_rows']} val "
        f"in {opts.out} (skipped {report['skipped_rows']} [{skipped}], unselected {report['unselected_rows']}; "
        f"{report['seconds']:.1f} s)"
    )
    if report["duplicate_rows"]:
        print(f"{spec.name}: {report['duplicate_rows']} row(s) repeat the problem of an earlier row of their split "
              f"(kept; e.g. {report['duplicate_examples'][0]}); no problem is in both splits")  # fmt: skip
    return report
