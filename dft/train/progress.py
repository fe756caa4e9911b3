"""A training run's progress in its own unit, and its logs in its own folder.

verl 0.9.1's SFT ``fit`` (torchrun and Ray) draws one ``tqdm`` bar per epoch over that epoch's batches, so with
``trainer.total_training_steps`` below an epoch (or several epochs) the bar's total and ETA are wrong. verl has no
seam for it; :func:`step_bar` stands in for the ``tqdm`` name of verl's trainer module while ``fit`` runs, with one
bar over the run's optimizer steps (``total_training_steps``, from the resumed step on).

Logs: Hydra writes its run folder (``.hydra/`` and the job log) to ``hydra.run.dir``, which
``configs/dft_trainer.yaml`` puts at ``<trainer.default_local_dir>/logs/<start time>``; :func:`scope_logs` points
verl's TensorBoard writer (``TENSORBOARD_DIR``) and file logger (``VERL_FILE_LOGGER_PATH``) into that folder, where
verl would write ``./tensorboard_log/<project>/<experiment>`` and ``./<project>/<experiment>.jsonl`` in the working
directory: two runs with the same name, or a run and its resumption, each get their own folder instead of
merging. Variables already set are left alone. A command that scores rather than trains (``dft ref_logprobs``, ``dft
diagnose``) keeps its Hydra folder beside what it writes instead (:func:`hydra_logs_beside`).
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from tqdm import tqdm


class StepBar:
    """Called where verl calls ``tqdm(dataloader, ...)`` each epoch; one bar counts the run's optimizer steps."""

    def __init__(self, total: int, done: int):
        self.total, self.done, self.bar = total, done, None

    def __call__(self, iterable, disable: bool = False, **verl_arguments):
        if self.bar is None:  # verl's first epoch decides whether this rank shows a bar
            self.bar = tqdm(total=self.total, initial=self.done, desc="train", unit="step", disable=disable)
        return self._steps(iterable)

    def _steps(self, iterable):
        for batch in iterable:
            yield batch
            self.bar.update(1)  # the step of that batch is done once the next batch is asked for

    def close(self, finished: bool) -> None:
        if self.bar is not None:
            if finished:  # fit returns inside its loop: the last step never asks for another batch
                self.bar.update(self.total - self.bar.n)
            self.bar.close()


@contextmanager
def step_bar(module: str, total: int, done: int):
    """While the block runs, ``tqdm`` in verl's trainer module ``module`` is one bar over ``total`` steps."""
    owner = sys.modules[module]
    bar, original, finished = StepBar(total, done), owner.tqdm, False
    owner.tqdm = bar
    try:
        yield bar
        finished = True
    finally:
        owner.tqdm = original
        bar.close(finished)


def hydra_run_dir() -> Path | None:
    """This run's Hydra folder, or None outside a Hydra app."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return Path(HydraConfig.get().runtime.output_dir)


def scope_logs(config, run_dir: Path | None = None) -> Path:
    """Point TensorBoard and verl's file logger into the run's log folder (Hydra's, else a new one under
    ``trainer.default_local_dir/logs``); return it."""
    run_dir = run_dir or hydra_run_dir()
    if run_dir is None:
        run_dir = Path(config.trainer.default_local_dir) / "logs" / datetime.now().strftime("%Y%m%d-%H%M%S")
    os.environ.setdefault("TENSORBOARD_DIR", str(run_dir / "tensorboard"))
    os.environ.setdefault("VERL_FILE_LOGGER_PATH", str(run_dir / "metrics.jsonl"))
    if "file" in (config.trainer.get("logger") or []):
        Path(os.environ["VERL_FILE_LOGGER_PATH"]).parent.mkdir(parents=True, exist_ok=True)
    return run_dir


def hydra_logs_beside(argv: list[str], key: str, suffix: str) -> list[str]:
    """``argv`` with ``hydra.run.dir=<value of key><suffix>/<start time>`` added where the command line sets ``key``
    and not ``hydra.run.dir``; else ``argv`` unchanged."""
    given = dict(arg.lstrip("+").split("=", 1) for arg in argv[1:] if "=" in arg and not arg.startswith("-"))
    if "hydra.run.dir" in given or not given.get(key):
        return argv
    return [*argv, f"hydra.run.dir={given[key]}{suffix}/${{now:%Y%m%d-%H%M%S}}"]
