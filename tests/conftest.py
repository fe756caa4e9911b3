"""Shared fixtures: the tiny model and data (made by code, once per session) and a launcher for dft.train."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from forked import run_forked

from dft.models.tiny import build_tiny_assets

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def environment_of_the_suite():
    """Each test leaves ``os.environ`` as it found it: a run prepared in this process (``scope_logs``) sets
    ``VERL_FILE_LOGGER_PATH`` and ``TENSORBOARD_DIR``, which every later launcher would otherwise inherit and log to."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return build_tiny_assets(tmp_path_factory.mktemp("tiny"), n_train=256, n_val=32, n_test=16, seed=0)


# verl's FSDP mixed precision in float32, so engine numbers can be held to float64 references
FP32 = [f"++engine.mixed_precision.{k}=fp32" for k in ("param_dtype", "reduce_dtype", "buffer_dtype")]


def compose_config(overrides=(), name="dft_trainer"):
    """A config of configs/ composed with overrides, as the command line would (dft.cli.recipe_check' composer)."""
    from dft.cli.recipe_check import compose
    from dft.core.paths import CONFIGS

    return compose(CONFIGS, name, list(overrides))


def tiny_overrides(tiny, run_dir, steps):
    return [
        "preset=tiny-cpu",
        f"model.path={tiny.model_dir}",
        f"data.train_files={tiny.train_parquet}",
        f"data.val_files={tiny.val_parquet}",
        f"trainer.total_training_steps={steps}",
        f"trainer.default_local_dir={run_dir}/ckpt",
        "trainer.logger=[console,file]",
    ]


def run_module(command, args, log_path=None, nproc=None, timeout=600):
    """Run ``python -m dft command args`` (as torchrun's ``nproc`` processes when nproc is given); return the result.

    verl's file logger writes to ``log_path`` when given. The processes are forks of this one (tests/forked.py: no
    interpreter start-up per run), or real ``python``/``torchrun`` processes with ``DFT_TESTS_SUBPROCESS=1``.
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if log_path is not None:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        env["VERL_FILE_LOGGER_PATH"] = str(log_path)
    args = [*command.split(), *map(str, args)]
    if os.environ.get("DFT_TESTS_SUBPROCESS") != "1":
        return run_forked("dft", args, env, REPO, nproc, timeout)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd = (launcher if nproc else [sys.executable]) + ["-m", "dft", *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def read_log(log_path):
    """verl's file logger lines as {step: metrics}, later lines for the same step merged in."""
    steps = {}
    for line in Path(log_path).read_text().splitlines():
        row = json.loads(line)
        steps.setdefault(row["step"], {}).update(row["data"])
    return steps


def check_ok(result):
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"


@pytest.fixture(scope="session")
def faithful_tiny(tmp_path_factory):
    """``faithful_tiny(card)``: a model-faithful tiny model of a ../shared/models card, built once per session."""
    from dft.models.cards import build_faithful_tiny

    root = tmp_path_factory.mktemp("faithful")
    return lambda card, **shape: build_faithful_tiny(card, root / card, **shape)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    """(assets, base model dir): a tiny Base that answers some problems, vLLM-compatible (tests/tiny_base.py)."""
    from tiny_base import make_tiny_base

    return make_tiny_base(tmp_path_factory.mktemp("tiny_base"))
