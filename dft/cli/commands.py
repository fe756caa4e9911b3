"""``python -m dft <command> [arguments]``: every command of the project, one entry point (torchrun: ``-m dft``).

A command that loads a model takes Hydra ``key=value`` overrides and is answered by :mod:`dft.cli.preflight`
(``--help``, bad values) before verl or torch is imported; a file tool takes ``--flags``. Each command is a
function of the stage package it belongs to, named here once; this table is the only list of them.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import sys
from pathlib import Path

# command -> "module:function"; a Hydra command is also listed in dft.cli.preflight.HYDRA_COMMANDS
COMMANDS = {
    "train": "dft.train.launch:train",
    "train_ray": "dft.train.launch:train_ray",
    "ref_logprobs": "dft.train.ref_scoring:main",
    "diagnose": "dft.report.diagnose:main",
    "eval": "dft.eval.evaluate:main",
    "data numina": "dft.data.numina:main",
    "data math": "dft.data.math:main",
    "data gsm8k": "dft.data.gsm8k:main",
    "data cft": "dft.data.cft:main",
    "data rl": "dft.rl.rl_data:main",
    "data rft": "dft.rl.rft:main",
    "grade": "dft.eval.grade_file:main",
    "regrade": "dft.eval.regrade:main",
    "prompts": "dft.models.prompts:main",
    "presets": "dft.models.presets:main",
    "model_cards": "dft.models.cards:main",
    "checkpoints": "dft.models.checkpoints:main",
    "tiny": "dft.models.tiny:main",
    "tables": "dft.report.tables:main",
    "figures": "dft.report.figures:main",
    "ablations": "dft.report.ablations:main",
    "continuum": "dft.report.continuum:main",
    "plan": "dft.report.plan:main",
    "recipes": "dft.cli.recipe_check:main",
    "quickstart": "dft.cli.quickstart.main:main",
}
# set to 1: a Hydra command only checks its overrides (dft.cli.preflight) and exits
PREFLIGHT_ONLY = "DFT_PREFLIGHT_ONLY"
GROUPS = sorted({name.split()[0] for name in COMMANDS if " " in name})


def split_command(argv: list[str]) -> tuple[str | None, list[str]]:
    """(command, its arguments) of ``argv``: one word, or a group and a word (``data numina``); None if unknown."""
    if argv and argv[0] in GROUPS and len(argv) > 1 and f"{argv[0]} {argv[1]}" in COMMANDS:
        return f"{argv[0]} {argv[1]}", argv[2:]
    if argv and argv[0] in COMMANDS:
        return argv[0], argv[1:]
    return None, argv


def module_of(command: str) -> str:
    return COMMANDS[command].split(":")[0]


def summary(command: str) -> str:
    """The first line of the module's docstring, or of the function's where a module holds several commands (read
    from the source, not imported)."""
    module, function = COMMANDS[command].split(":")
    tree = ast.parse(Path(importlib.util.find_spec(module).origin).read_text())
    nodes = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function]
    shared = sum(target.startswith(f"{module}:") for target in COMMANDS.values()) > 1
    doc = (ast.get_docstring(nodes[0]) if nodes and shared else None) or ast.get_docstring(tree) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def usage() -> str:
    lines = ["usage: python -m dft <command> [arguments]   (torchrun ... -m dft <command> ...)", "", "commands:"]
    lines += [f"  {name:<14} {summary(name)}" for name in COMMANDS]
    lines += ["", "Each command answers --help. Commands that load a model take Hydra key=value overrides."]
    return "\n".join(lines)


def run(command: str, args: list[str]) -> None:
    """Run one command as ``python -m dft command args`` would: its function sees ``sys.argv`` = [prog, *args]."""
    from dft.cli.preflight import HYDRA_COMMANDS, preflight

    if command in HYDRA_COMMANDS:
        preflight(command, args, summary(command))  # --help and bad overrides, answered before verl is imported
        if os.environ.get(PREFLIGHT_ONLY) == "1":  # scripts/train.sh: check once, before torchrun starts workers
            raise SystemExit(0)
    module, function = COMMANDS[command].split(":")
    sys.argv = [f"python -m dft {command}", *args]
    getattr(importlib.import_module(module), function)()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    command, args = split_command(argv)
    if command is not None:
        return run(command, args)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        raise SystemExit(0)
    near = [name for name in COMMANDS if name.startswith(argv[0])]
    hint = f"; did you mean {' or '.join(near)}?" if near else ""
    print(f"error: unknown command {' '.join(argv[:2])!r}{hint} (python -m dft --help lists them)", file=sys.stderr)
    raise SystemExit(2)
