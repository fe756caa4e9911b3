"""Check that the commands a recipe prints compose, before any GPU time is spent on them.

    DRY_RUN=1 bash recipes/table1/run.sh | python -m dft recipes check

Each line of a recipe's dry run is one command. A command composes when its configuration or arguments are
what the program would accept at start-up. How a program reads its command line is found in the program
itself, so a new entry point needs no change here:

- a **Hydra** entry point (a ``@hydra.main(config_path=..., config_name=...)``, or a wrapper taking the same
  keywords; ``dft train``, ``dft eval``, ``dft data rft``, verl's ``main_ppo`` ...): the overrides compose the
  config it names (or the one given with ``--config-path``/``--config-name``), and every section the config holds is
  checked: ``loss`` (the loss validates, its normalisation fits the micro-batching, the data format has a dataset
  for the loss, verl's engine/optim/checkpoint dataclasses build), ``sampling`` (a known backend and prompt
  template, valid sampling parameters), ``actor_rollout_ref`` (verl's ``validate_config`` and the actor, rollout and
  algorithm dataclasses; the critic's section reads the model from disk: checked only for a local model). Outside
  verl's own configs no value may be left missing. A module that defines ``check_config(cfg)``
  (``dft ref_logprobs``) has it run too: the checks it does itself at start-up.
- an **argparse** entry point (a module-level ``build_parser()``, or a data preparation's ``SPEC``): its parser
  accepts the arguments.
- ``mkdir`` and ``ln``: shell steps, accepted as they are.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import importlib.util
import io
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from dft.cli import commands
from dft.core.args import DefaultsHelpFormatter
from dft.core.paths import CONFIGS

SHELL_STEPS = ("mkdir", "ln")


class CommandError(ValueError):
    """A recipe command that would fail at start-up; the message says which command and why."""


@dataclass(frozen=True)
class EntryPoint:
    """What the source of ``python -m <module>`` says about its command line (read, not imported)."""

    module: str
    hydra: tuple[Path, str] | None  # (config dir, config name) of its @hydra.main, if it has one
    names: frozenset[str]  # its module-level names: build_parser, SPEC, check_config ...


def split_command(line: str) -> tuple[str, list[str]]:
    """(program, arguments) of a printed command: ``dft <command>`` or the module after ``-m`` for python/torchrun,
    else argv[0]."""
    argv = shlex.split(line)
    if not argv:
        raise CommandError("empty command")
    if argv[0] in SHELL_STEPS:
        return argv[0], argv[1:]
    if "-m" not in argv:
        raise CommandError(f"not a python -m / torchrun -m command: {line}")
    at = argv.index("-m")
    module, args = argv[at + 1], argv[at + 2 :]
    if module != "dft":
        return module, args
    command, args = commands.split_command(args)
    if command is None:
        raise CommandError(f"not a command of python -m dft: {line}")
    return f"dft {command}", args


def module_source(module: str) -> Path | None:
    """The file ``python -m module`` runs (a package's ``__main__``), or None if there is no such module."""
    try:
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.submodule_search_locations is not None:
            spec = importlib.util.find_spec(f"{module}.__main__")
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec is not None and spec.origin not in (None, "built-in", "frozen") else None


def _literal(node: ast.expr):
    """A keyword's value: a literal, or the project's configs folder (``config_path=str(CONFIGS)``)."""
    try:
        return ast.literal_eval(node)
    except ValueError:
        if "CONFIGS" in ast.unparse(node):
            return str(CONFIGS)
        raise


def entry_point(module: str) -> EntryPoint | None:
    """How ``module`` reads its command line, from its source: None if there is no such module."""
    source = module_source(module)
    if source is None:
        return None
    tree = ast.parse(source.read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    hydra = None
    for node in ast.walk(tree):
        # @hydra.main(config_path=..., config_name=...), or any wrapper of it that takes the same keywords
        if isinstance(node, ast.Call) and "config_name" in {k.arg for k in node.keywords}:
            options = {k.arg: _literal(k.value) for k in node.keywords if k.arg.startswith("config_")}
            hydra = ((source.parent / options.get("config_path", ".")).resolve(), options["config_name"])
    return EntryPoint(module, hydra, frozenset(names))


def compose(config_dir: Path, name: str, overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        return hydra_compose(config_name=name, overrides=overrides)


def _check_no_missing(cfg) -> None:
    from omegaconf import OmegaConf

    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise CommandError(f"no value for {missing}")


def check_training(cfg) -> None:
    """A ``loss`` section: dft's SFT trainer config (dft train, dft train_ray, dft ref_logprobs)."""
    from verl.utils.config import omega_conf_to_dataclass

    from dft.data.training_format import check_format
    from dft.train.losses.registry import loss_config_from, loss_errors
    from dft.train.sft_datasets import dataset_for

    errors = loss_errors(cfg)
    if errors:
        raise CommandError("; ".join(errors))
    dataset_for(check_format(cfg.data.format), loss_config_from(cfg.loss).spec.data)
    for section in ("engine", "optim", "checkpoint", "profiler"):
        omega_conf_to_dataclass(cfg[section])


def check_sampling(cfg) -> None:
    """A ``sampling`` section: the evaluation harness's config (dft eval, dft data rft)."""
    from dft.eval.backends import BACKENDS, SamplingParams
    from dft.models.prompts import AUTO, get_template

    if cfg.backend not in BACKENDS:
        raise CommandError(f"backend={cfg.backend} is not one of {', '.join(BACKENDS)}")
    if cfg.prompt != AUTO:  # auto is resolved from the model, which a dry run may not have yet
        get_template(cfg.prompt)
    SamplingParams(**cfg.sampling)


def check_rl(cfg) -> None:
    """An ``actor_rollout_ref`` section: verl's PPO/GRPO config (main_ppo)."""
    from omegaconf import OmegaConf
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass, validate_config

    # the critic's section reads the model's config from disk: checked only when the model is a local folder
    use_critic = need_critic(cfg) and Path(cfg.actor_rollout_ref.model.path).is_dir()
    with contextlib.redirect_stdout(io.StringIO()):
        validate_config(cfg, use_reference_policy=need_reference_policy(cfg), use_critic=use_critic)
    for key in ("actor_rollout_ref.actor", "actor_rollout_ref.rollout", "algorithm"):
        omega_conf_to_dataclass(OmegaConf.select(cfg, key))


SECTION_CHECKS = (("loss", check_training), ("sampling", check_sampling), ("actor_rollout_ref", check_rl))


def check_hydra(entry: EntryPoint, args: list[str]) -> None:
    """Compose the entry point's config with the overrides, then check every section it holds."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--config-path", "-cp", type=Path)
    parser.add_argument("--config-name", "-cn")
    flags, overrides = parser.parse_known_args(args)
    config_dir, name = entry.hydra
    if flags.config_path is not None:  # relative to the entry point's file, as Hydra reads it
        config_dir = (module_source(entry.module).parent / flags.config_path).resolve()
    cfg = compose(config_dir, flags.config_name or name, overrides)
    if "actor_rollout_ref" not in cfg:  # verl's own configs leave values for validate_config to judge
        _check_no_missing(cfg)
    for section, check in SECTION_CHECKS:
        if section in cfg:
            check(cfg)
    if "check_config" in entry.names:
        importlib.import_module(entry.module).check_config(cfg)


def check_arguments(entry: EntryPoint, args: list[str]) -> None:
    """Parse the arguments with the module's own parser (argparse exits on an error: turned into one here)."""
    module = importlib.import_module(entry.module)
    if "build_parser" in entry.names:
        parser = module.build_parser()
    else:
        from dft.data.prep import build_parser

        parser = build_parser(module.SPEC)
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            parser.parse_args(args)
    except SystemExit as exc:
        raise CommandError(stderr.getvalue().strip().splitlines()[-1]) from exc


def check_program(program: str, args: list[str]) -> None:
    """Check one program's arguments by the kind of entry point its source shows."""
    if program in SHELL_STEPS:
        return
    entry = entry_point(commands.module_of(program[4:]) if program.startswith("dft ") else program)
    if entry is None:
        raise CommandError("no check for this program: no such module")
    if entry.hydra is not None:
        check_hydra(entry, args)
    elif entry.names & {"build_parser", "SPEC"}:
        check_arguments(entry, args)
    else:
        raise CommandError("no check for this program: neither @hydra.main nor build_parser() nor a SPEC")


def check_command(line: str) -> str:
    """Check one printed command; return its program; raise CommandError naming the command and the reason."""
    program, args = split_command(line)
    try:
        check_program(program, args)
    except CommandError as exc:
        raise CommandError(f"{program}: {exc}\n  in: {line}") from None
    except Exception as exc:  # a Hydra, OmegaConf or verl validation error: report it with the command
        raise CommandError(f"{program}: {type(exc).__name__}: {exc}\n  in: {line}") from exc
    return program


def check_lines(lines) -> tuple[list[str], list[str]]:
    """(programs of the commands that compose, error messages of those that do not); blank lines are skipped."""
    programs, errors = [], []
    for line in lines:
        if not line.strip():
            continue
        try:
            programs.append(check_command(line))
        except CommandError as exc:
            errors.append(str(exc))
    return programs, errors


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["step"], ["claim"]):  # a recipe's steps and knobs (dft/cli/recipe_steps.py)
        from dft.cli.recipe_steps import main as steps

        return steps(argv[1:] if argv[0] == "step" else argv)
    parser = argparse.ArgumentParser(
        prog="python -m dft recipes",
        description=__doc__.splitlines()[0],
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument(
        "action",
        choices=["check", "knobs", "step", "claim"],
        help="check: a dry run's commands compose; knobs: a recipe's environment variables are valid; step "
        "begin|done OUT -- CMD, claim RUNS RECIPE KNOB=VALUE...: run each step once (dft/cli/recipe_steps.py)",
    )
    parser.add_argument("file", nargs="?", type=Path, help="a recipe's dry-run output (default: stdin)")
    args = parser.parse_args(argv)
    if args.action == "knobs":
        from dft.cli.recipe_knobs import main as knobs

        return knobs()
    text = args.file.read_text() if args.file else sys.stdin.read()
    programs, errors = check_lines(text.splitlines())
    for error in errors:
        print(f"FAIL {error}", file=sys.stderr)
    print(f"{len(programs)} command(s) compose, {len(errors)} do not")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
