"""A recipe's steps run once each: a finished step is skipped, an unfinished one resumed, another command refused.

``recipes/common.sh`` wraps every step that writes a folder or file (data preparation, training, scoring,
evaluation, regrading, sampling, RL) in ``step OUT CMD...``, which asks this module before and after CMD runs:

    python -m dft recipes step begin OUT -- CMD...   exit 0: run CMD; 3: OUT is finished (skip it); 2: refused
    python -m dft recipes step done OUT -- CMD...    CMD exited 0: OUT is finished

``OUT`` records the command that writes it (``OUT/recipe_step.json``, or ``OUT.recipe_step.json`` beside a file).
Started again with the same command, a finished step is skipped and an unfinished one runs again, which resumes it
(training from its last checkpoint, evaluation from its saved responses: each command resumes its own work). Another
command for the same ``OUT`` is refused, naming each differing argument, before anything runs (but for the
arguments that only lay the step out on the machine, :data:`LAYOUT_ARGS`).

A recipe's knobs (its environment variables) are claimed the same way, once per recipe and ``RUNS`` folder:

    python -m dft recipes claim RUNS RECIPE KNOB=VALUE...  exit 2 (naming each differing knob) if RUNS holds
                                                            that recipe's runs made with other knobs

Knobs that change only where or how a step runs, never its result, are not claimed (:data:`LAYOUT_KNOBS`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dft.core.io import write_json_atomic

RECORD = "recipe_step.json"
FINISHED = 3  # the exit status of ``step begin`` for a finished step
LAYOUT_KNOBS = ("DRY_RUN", "NPROC_PER_NODE", "EVAL_GPUS", "FIGURE_FORMAT", "DATA", "RUNS")
# a step's arguments that change how it is laid out on the machine, never its result: a step started again on
# another number of GPUs, or with other batch sizes for generation, goes on with its own work
LAYOUT_ARGS = ("data_parallel", "gpus_per_replica", "hf.batch_size", "chunk_size", "grading.workers",
               "vllm.tensor_parallel_size", "vllm.gpu_memory_utilization", "GPUS_PER_NODE",
               "ref.rows_per_step")  # fmt: skip


FILE_SUFFIXES = (".parquet", ".jsonl", ".json", ".md", ".pdf", ".png", ".svg")  # a step's output file, not folder


def record_path(out: Path) -> Path:
    """Where the step that writes ``out`` is recorded: inside a folder, beside a file."""
    return out.with_name(out.name + "." + RECORD) if out.suffix in FILE_SUFFIXES else out / RECORD


def as_keys(args: list[str]) -> dict[str, str]:
    """A command as ``{key: value}``: ``key=value`` and ``--key value`` by their key, anything else by position."""
    keys, i = {}, 0
    while i < len(args):
        arg = args[i]
        if "=" in arg and not arg.startswith("-"):
            key, value = arg.split("=", 1)
            keys[key] = value
        elif arg.startswith("--") and i + 1 < len(args) and not args[i + 1].startswith("--"):
            keys[arg], i = args[i + 1], i + 1
        else:
            keys[f"argument {len(keys) + 1}"] = arg
        i += 1
    return keys


def differences(old: dict[str, str], new: dict[str, str], what: str, ignore=()) -> list[str]:
    """``key: old there, new now`` for each differing entry but those in ``ignore`` (``what``: argument or knob)."""
    out = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key) and key not in ignore:
            there = "unset" if key not in old else repr(old[key])
            now = "unset" if key not in new else repr(new[key])
            out.append(f"{what} {key}: {there} there, {now} now")
    return out


def _read(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SystemExit(f"error: {path}: not valid JSON ({err.msg}); remove it to start that step over") from None


def begin(out: Path, command: list[str]) -> int:
    """0: run the step (new, or unfinished with the same command); FINISHED: skip it; exit 2 if another command."""
    path = record_path(out)
    recorded = _read(path)
    if recorded is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {"command": command, "finished": False})
        return 0
    differing = differences(as_keys(recorded["command"]), as_keys(command), "argument", ignore=LAYOUT_ARGS)
    if differing:
        print(f"error: {out} was made by another command ({path}); running this one would mix two runs: "
              + "; ".join(differing) + ". Use another RUNS (or DATA) folder, or remove this one to start over.",
              file=sys.stderr)  # fmt: skip
        raise SystemExit(2)
    return FINISHED if recorded.get("finished") else 0


def done(out: Path, command: list[str]) -> None:
    write_json_atomic(record_path(out), {"command": command, "finished": True})


def claim_knobs(runs: Path, recipe: str, pairs: list[str]) -> None:
    """Record the recipe's knobs in ``runs/recipes/<recipe>.json``, or exit 2 naming each that differs there."""
    knobs = {k: v for k, v in (p.split("=", 1) for p in pairs) if k not in LAYOUT_KNOBS}
    path = runs / "recipes" / f"{recipe}.json"
    recorded = _read(path)
    if recorded is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, knobs)
        return
    # a knob the record lacks is one added to the recipes since: not a difference (its default made the runs)
    differing = differences(recorded, {k: v for k, v in knobs.items() if k in recorded}, "knob")
    if differing:
        print(f"error: {runs} holds recipe {recipe}'s runs made with other knobs ({path}): " + "; ".join(differing)
              + ". Set the same knobs to go on with them, or use another RUNS folder.", file=sys.stderr)  # fmt: skip
        raise SystemExit(2)
    if set(knobs) - set(recorded):
        write_json_atomic(path, {**knobs, **recorded})


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m dft recipes", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    for action in ("begin", "done"):
        one = sub.add_parser(action)
        one.add_argument("out", type=Path)
        one.add_argument("command", nargs=argparse.REMAINDER)
    knobs = sub.add_parser("claim")
    knobs.add_argument("runs", type=Path)
    knobs.add_argument("recipe")
    knobs.add_argument("knobs", nargs="*", metavar="KNOB=VALUE")
    args = parser.parse_args(argv)
    if args.action == "claim":
        return claim_knobs(args.runs, args.recipe, args.knobs)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.action == "begin":
        raise SystemExit(begin(args.out, command))
    done(args.out, command)
