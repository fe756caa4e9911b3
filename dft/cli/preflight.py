"""The command-line rule, and what every entry point answers before anything heavy is imported.

The rule: a command that loads a model takes Hydra ``key=value`` overrides (``dft train``, ``dft train_ray``,
``dft ref_logprobs``, ``dft diagnose``, ``dft eval``, ``dft data rft``); a file tool takes ``--flags`` (argparse,
its help showing every default). One name for each concept: the model is ``model.path`` in the trainers' config
(verl's key) and ``model`` in the evaluation's; a written folder is ``out`` (``--out``); a cap on how much input
is used is ``limit`` (``--limit``), and ``limit=0`` is an error, never "everything".

``preflight(command)`` runs before a Hydra command (``python -m dft`` calls it): ``--help``/``-h`` prints a short help
(what
the command does, its choices, how to see the full config) and exits, without importing verl or torch; otherwise
the overrides are composed into the config (without verl: its config folder is read as files) and checked by
:mod:`dft.cli.validate`, so a bad value stops the command in seconds with a message naming the key, before any
model loads. Hydra's own handling (``--cfg job``, ``--hydra-help``, multirun) is left to Hydra.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

from dft.core.paths import CONFIGS

HELP_FLAGS = ("-h", "--help")
# an old key and what replaced it (refused with that message rather than with Hydra's "not in struct")
RENAMED = {"output_dir": "out"}


@dataclass(frozen=True)
class HydraCommand:
    """One Hydra command: its name (``python -m dft <name>``), its config, its main keys, its choices."""

    name: str
    config: str
    keys: tuple[tuple[str, str], ...]
    choices: tuple[str, ...]


_TRAIN_KEYS = (
    ("model.path", "the model to start from: a hub id or a local folder (set by preset=)"),
    ("data.train_files", "prepared parquet(s) with a `messages` column (python -m dft data <name>)"),
    ("trainer.default_local_dir", "the run's folder: checkpoints, logs/ (Hydra), tensorboard/"),
    ("trainer.total_training_steps", "stop after this many optimizer steps (null: total_epochs over the data)"),
    ("trainer.logger", "[console], plus tensorboard (into the run's folder) or wandb"),
)
_SAMPLE_KEYS = (
    ("model", "a hub id, a Hugging Face folder or a verl run folder (its latest checkpoint)"),
    ("backend", "hf (transformers, CPU or one GPU) or vllm"),
    ("sampling.n", "samples per problem"),
    ("limit", "the first N problems (null: all; 0 is an error)"),
    ("out", "the folder to write (a folder holds one run)"),
)
HYDRA_COMMANDS = {
    c.name: c
    for c in (
        HydraCommand("train", "dft_trainer", _TRAIN_KEYS, ("loss", "preset", "setting")),
        HydraCommand("train_ray", "dft_trainer", _TRAIN_KEYS, ("loss", "preset", "setting")),
        HydraCommand(
            "ref_logprobs",
            "dft_trainer",
            (
                ("model.path", "the reference model (set by preset=)"),
                ("data.train_files", "the parquet to score"),
                ("ref.output", "the parquet to write"),
            ),
            ("preset", "setting"),
        ),  # fmt: skip
        HydraCommand(
            "diagnose",
            "dft_trainer",
            (
                ("model.path", "the starting model (set by preset=)"),
                ("data.train_files", "the fine-tuning parquet (pass the training run's setting= or data.format=)"),
                ("out", "the report's folder: report.md, report.json, target_probs.png"),
                ("limit", "the first N rows scored (default 2000; null: all)"),
            ),
            ("preset", "setting"),
        ),  # fmt: skip
        HydraCommand(
            "eval",
            "eval",
            _SAMPLE_KEYS + (("benchmarks", "a list, e.g. benchmarks=[math500,aime24]"),),
            ("benchmarks", "prompt", "backend", "grader"),
        ),  # fmt: skip
        HydraCommand(
            "data rft",
            "rft",
            (("input", "an SFT parquet (messages, id, gold), an RL parquet (dft data rl) or a jsonl"),) + _SAMPLE_KEYS,
            ("backend", "format"),
        ),  # fmt: skip
    )
}


# ---------------------------------------------------------------------------------------------------------------
# Choices, read without importing torch or verl
# ---------------------------------------------------------------------------------------------------------------


def registered_losses() -> dict:
    """``loss.name`` -> its registry entry (:mod:`dft.train.losses`, which imports neither torch nor verl)."""
    from dft.train.losses.registry import losses

    return losses()


def config_names(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def _first_comment(path: Path) -> str:
    """The first comment line of a config file that is not a Hydra directive."""
    lines = [line[1:].strip() for line in path.read_text().splitlines() if line.startswith("#")]
    return next((line for line in lines if not line.startswith("@")), "")


def _choices(kind: str) -> tuple[str, list[str]]:
    """(the key, one line per valid value)."""
    if kind == "loss":
        return "loss.name", [f"{name:<10} {spec.doc}" for name, spec in registered_losses().items()]
    if kind == "preset":
        from dft.models.presets import presets

        return "preset", [f"{p.name:<18} {p.paper_name} ({p.hub_id or 'built by code'})" for p in presets().values()]
    if kind == "setting":
        return "setting", [
            f"{name:<10} {_first_comment(CONFIGS / 'setting' / f'{name}.yaml')}" for name in config_names("setting")
        ]
    if kind == "benchmarks":
        from dft.eval.benchmarks import BENCHMARKS, PAPER_BENCHMARKS

        paper = [f"paper (default): {', '.join(PAPER_BENCHMARKS)}"]
        return "benchmarks", paper + [f"{name}{' (paper)' if name in PAPER_BENCHMARKS else ''}" for name in BENCHMARKS]
    if kind == "prompt":
        from dft.models.prompts import AUTO, PROMPT_TEMPLATES

        return "prompt", [f"{AUTO} (the model's preset's paper.eval_prompt; default)", *PROMPT_TEMPLATES]
    if kind == "backend":
        from dft.eval.backends import BACKENDS

        return "backend", list(BACKENDS)
    if kind == "grader":
        from dft.eval.graders import DEFAULT_GRADER, GRADERS

        return "grader", [f"{name}{' (default)' if name == DEFAULT_GRADER else ''}" for name in GRADERS]
    if kind == "format":
        from dft.data.training_format import FORMATS

        return "format", list(FORMATS)
    raise ValueError(f"no choices called {kind!r}")


# ---------------------------------------------------------------------------------------------------------------
# --help
# ---------------------------------------------------------------------------------------------------------------


def hydra_help(command: HydraCommand, summary: str) -> str:
    prog = f"python -m dft {command.name}"
    lines = [f"usage: {prog} [key=value ...]", "", summary, "", "main keys:"]
    lines += [f"  {key:<28} {what}" for key, what in command.keys]
    for kind in command.choices:
        key, values = _choices(kind)
        lines += ["", f"{key}:"] + [f"  {value}" for value in values]
    lines += [
        "",
        f"Every key of configs/{command.config}.yaml (and of what it inherits) is a `key=value` override. The full",
        f"config with your overrides: {prog} --cfg job [key=value ...]; Hydra's own options:",
        f"{prog} --hydra-help. All commands: python -m dft --help.",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Before the entry point runs
# ---------------------------------------------------------------------------------------------------------------


def _overrides(argv: list[str]) -> list[str] | None:
    """The plain ``key=value`` overrides, or None when Hydra is asked for something else (flags, multirun)."""
    if any(a.startswith("-") for a in argv):
        return None
    return [a for a in argv if not a.startswith(("hydra.", "hydra/", "+hydra", "~hydra"))]


def compose_config(command: HydraCommand, overrides: list[str], with_hydra: bool = False):
    """The config Hydra will compose (``with_hydra``: and its ``hydra`` section), without importing verl: verl's
    config package is read as a folder."""
    from hydra import compose, initialize_config_dir

    extra = []
    if command.config == "dft_trainer":
        verl = Path(importlib.util.find_spec("verl").origin).parent / "trainer" / "config"
        extra = [f"hydra.searchpath=[file://{verl}]"]
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        return compose(command.config, overrides=overrides + extra, return_hydra_config=with_hydra)


def _nearest(word: str, candidates) -> str:
    import difflib

    near = difflib.get_close_matches(word, [str(c) for c in candidates], n=1, cutoff=0.6)
    return f"; did you mean {near[0]}?" if near else ""


def _unknown_key(command: HydraCommand, overrides: list[str], key: str) -> str:
    """``key`` is not in the config: name the nearest key of the section it was meant for."""
    from omegaconf import OmegaConf

    rest = [o for o in overrides if o.split("=")[0].lstrip("+~") != key]
    try:
        node = compose_config(command, rest)
    except Exception:  # noqa: BLE001
        return ""
    parts, known = key.split("."), []
    while parts and OmegaConf.is_dict(node) and parts[0] in node:
        known.append(parts.pop(0))
        node = node[known[-1]]
    if not parts or not OmegaConf.is_dict(node):
        return ""
    where = ".".join(known)
    near = _nearest(parts[0], node.keys())
    near = near.replace("mean ", f"mean {where}.") if where else near
    return (f"{key}: no such key{' in ' + where if where else ''}{near} (python -m dft {command.name} --cfg job "
            f"lists every key; +{key}=... adds a new one)")  # fmt: skip


def compose_errors(command: HydraCommand, overrides: list[str], err: Exception) -> list[str]:
    """A one-line message for Hydra's refusal of an unknown key or config choice (empty: leave it to Hydra)."""
    import re

    text = str(err)
    unknown = re.search(r"Could not override '([^']+)'", text)
    if unknown and "not in struct" in str(err.__cause__):
        return [m for m in [_unknown_key(command, overrides, unknown.group(1))] if m]
    missing = re.search(r"Could not find '([\w-]+)/([^']+)'", text)
    if missing and (CONFIGS / missing.group(1)).is_dir():
        group, value = missing.groups()
        valid = config_names(group)
        return [f"{group}={value}: no such {group}{_nearest(value, valid)} (valid: {', '.join(valid)})"]
    return []


def fail(errors: list[str], status: int = 2) -> None:
    """Print every error (one line each, no traceback) and exit with ``status``."""
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    raise SystemExit(status)


def preflight(name: str, argv: list[str], summary: str = "") -> None:
    """Answer ``--help`` (``summary``: what the command does); refuse renamed keys; compose and validate the
    overrides. Exits on help or bad input."""
    command = HYDRA_COMMANDS[name]
    if any(a in HELP_FLAGS for a in argv):
        print(hydra_help(command, summary))
        raise SystemExit(0)
    renamed = [f"{a.split('=')[0]}= was renamed {RENAMED[a.split('=')[0]]}=" for a in argv
               if a.split("=")[0] in RENAMED and command.config != "dft_trainer"]  # fmt: skip
    if renamed:
        fail(renamed)
    overrides = _overrides(argv)
    if overrides is None:
        return
    try:
        config = compose_config(command, overrides)
    except Exception as err:  # noqa: BLE001  (what is not named here Hydra reports itself, in the real run)
        errors = compose_errors(command, overrides, err)
        if errors:
            fail(errors)
        return
    from dft.cli.validate import validate

    errors = validate(name, config)
    if errors:
        fail(errors)
