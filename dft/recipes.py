"""Check that the commands a recipe prints compose, before any GPU time is spent on them.

    DRY_RUN=1 bash recipes/table1/run.sh | python -m dft.recipes check

Each line of a recipe's dry run is one command. A command composes when its configuration or arguments are
what the program would accept at start-up:

- ``dft.train``, ``dft.train_ray``, ``dft.ref_logprobs``: the Hydra overrides compose ``configs/dft_trainer.yaml``
  with no value left missing, the loss section validates, its normalisation fits the micro-batching, the data
  format has a dataset for the loss, and verl's engine/optim/checkpoint dataclasses build.
- ``dft.eval``, ``dft.data.rft``: the overrides compose ``configs/eval.yaml`` / ``configs/rft.yaml``, with a
  known backend and prompt template and valid sampling parameters.
- ``verl.trainer.main_ppo``: the overrides compose the named config and pass main_ppo's ``validate_config``
  and the actor, rollout and algorithm dataclasses (the model and critic sections read the model from disk:
  checked only for a local model).
- ``dft.data.<name>``, ``dft.tables``, ``dft.ablations``, ``dft.figures``, ``dft.checkpoints``: their argument
  parsers accept the arguments.
- ``mkdir`` and ``ln``: shell steps, accepted as they are.
"""

import argparse
import contextlib
import io
import shlex
import sys
from pathlib import Path

from dft.cli import DefaultsHelpFormatter

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TRAINER_MODULES = ("dft.train", "dft.train_ray", "dft.ref_logprobs")
DATA_MODULES = ("dft.data.numina", "dft.data.math", "dft.data.gsm8k", "dft.data.cft", "dft.data.rl")
SHELL_STEPS = ("mkdir", "ln")


class CommandError(ValueError):
    """A recipe command that would fail at start-up; the message says which command and why."""


def split_command(line: str) -> tuple[str, list[str]]:
    """(program, arguments) of a printed command: the module after ``-m`` for python/torchrun, else argv[0]."""
    argv = shlex.split(line)
    if not argv:
        raise CommandError("empty command")
    if argv[0] in SHELL_STEPS:
        return argv[0], argv[1:]
    if "-m" not in argv:
        raise CommandError(f"not a python -m / torchrun -m command: {line}")
    at = argv.index("-m")
    return argv[at + 1], argv[at + 2 :]


def compose(config_dir: Path, name: str, overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        return hydra_compose(config_name=name, overrides=overrides)


def _check_no_missing(cfg, allowed=()) -> None:
    from omegaconf import OmegaConf

    missing = sorted(set(OmegaConf.missing_keys(cfg)) - set(allowed))
    if missing:
        raise CommandError(f"no value for {missing}")


def check_trainer(module: str, args: list[str]) -> None:
    from verl.utils.config import omega_conf_to_dataclass

    from dft.datasets import dataset_for
    from dft.formats import check_format
    from dft.losses import loss_config_from
    from dft.trainer import check_normalization

    cfg = compose(CONFIGS, "dft_trainer", args)
    _check_no_missing(cfg)
    loss = loss_config_from(cfg.loss)
    check_normalization(cfg, loss)
    dataset_for(check_format(cfg.data.format), loss.spec.data)
    for section in ("engine", "optim", "checkpoint", "profiler"):
        omega_conf_to_dataclass(cfg[section])
    if module == "dft.ref_logprobs" and not cfg.ref.output:
        raise CommandError("dft.ref_logprobs needs ref.output")


def check_eval(module: str, args: list[str]) -> None:
    from dft.eval.backends import SamplingParams
    from dft.eval.prompts import AUTO, get_template

    cfg = compose(CONFIGS, "rft" if module == "dft.data.rft" else "eval", args)
    _check_no_missing(cfg)
    if cfg.backend not in ("hf", "vllm"):
        raise CommandError(f"backend={cfg.backend} is neither hf nor vllm")
    if cfg.prompt != AUTO:  # auto is resolved from the model, which a dry run may not have yet
        get_template(cfg.prompt)
    SamplingParams(**cfg.sampling)


def check_main_ppo(args: list[str]) -> None:
    from omegaconf import OmegaConf
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass, validate_config

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--config-path", default=str(CONFIGS))
    parser.add_argument("--config-name", required=True)
    known, overrides = parser.parse_known_args(args)
    cfg = compose(Path(known.config_path), known.config_name, overrides)
    # the critic's section reads the model's config from disk: checked only when the model is a local folder
    use_critic = need_critic(cfg) and Path(cfg.actor_rollout_ref.model.path).is_dir()
    with contextlib.redirect_stdout(io.StringIO()):
        validate_config(cfg, use_reference_policy=need_reference_policy(cfg), use_critic=use_critic)
    for key in ("actor_rollout_ref.actor", "actor_rollout_ref.rollout", "algorithm"):
        omega_conf_to_dataclass(OmegaConf.select(cfg, key))


def check_arguments(module: str, args: list[str]) -> None:
    """Parse the arguments with the module's own parser (argparse exits on an error: turned into one here)."""
    import importlib

    if module in DATA_MODULES:
        from dft.data.common import build_parser

        parser = build_parser(importlib.import_module(module).SPEC)
    else:
        parser = importlib.import_module(module).build_parser()
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            parser.parse_args(args)
    except SystemExit as exc:
        raise CommandError(stderr.getvalue().strip().splitlines()[-1]) from exc


def check_command(line: str) -> str:
    """Check one printed command; return its program; raise CommandError naming the command and the reason."""
    program, args = split_command(line)
    try:
        if program in SHELL_STEPS:
            pass
        elif program in TRAINER_MODULES:
            check_trainer(program, args)
        elif program in ("dft.eval", "dft.data.rft"):
            check_eval(program, args)
        elif program == "verl.trainer.main_ppo":
            check_main_ppo(args)
        elif program in (*DATA_MODULES, "dft.tables", "dft.ablations", "dft.figures", "dft.checkpoints"):
            check_arguments(program, args)
        else:
            raise CommandError("no check for this program")
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
    parser = argparse.ArgumentParser(
        prog="python -m dft.recipes",
        description=__doc__.splitlines()[0],
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("action", choices=["check"])
    parser.add_argument("file", nargs="?", type=Path, help="a recipe's dry-run output (default: stdin)")
    args = parser.parse_args(argv)
    text = args.file.read_text() if args.file else sys.stdin.read()
    programs, errors = check_lines(text.splitlines())
    for error in errors:
        print(f"FAIL {error}", file=sys.stderr)
    print(f"{len(programs)} command(s) compose, {len(errors)} do not")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
