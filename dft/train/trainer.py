"""verl's engine SFT trainers with the loss chosen by ``loss.name``; everything else is verl's.

``DFTTrainer`` subclasses ``verl.trainer.sft_trainer.SFTTrainer`` (torchrun / SPMD) and ``DFTRayTrainer``
subclasses ``verl.trainer.sft_trainer_ray.SFTTrainer`` (single controller over Ray). Each one builds verl's
engine as verl does, then swaps the loss with ``training_client.set_loss_fn``.

Gaps filled here, each in its own function:

- verl's SFT ``fit`` logs the metrics a loss returns as it receives them, a list of
  ``verl.utils.metric.Metric`` per data-parallel rank, which no logger can print. The trainers reduce such
  values to floats (``Metric.aggregate_dp``, as verl's PPO path does) before ``fit`` sees them.
- A non-finite ``train/loss`` stops the run right after the step that produced it, before the next optimizer
  step and before that step's checkpoint (verl would skip the update and go on, saving the run).
- Rows with no loss token within ``data.max_length`` are counted when the dataset is built; a run where every
  row is such is refused (and a global batch without a loss token stops with an error from the loss).
- A finished run started again trains nothing (verl would train one more step when
  ``trainer.total_training_steps`` ends mid-epoch).

The dataset comes from the loss's registry entry (``dft.train.losses.registry.LossSpec.data``) and ``data.format``
(``dft.data.training_format``): ``dft.train.sft_datasets.dataset_for`` names the class, set through verl's
``data.custom_cls``. For
``dpo`` the loader yields pairs as consecutive rows, and every batch carries verl's ``force_group_size=2`` so
that the engine's micro-batching (fixed or dynamic) never splits a pair.
"""

import math
from functools import cached_property, wraps

import dft.train.cpu_platform  # noqa: F401  (registers the CPU platform before verl's trainers are imported)

# isort: split
from omegaconf import DictConfig
from verl.trainer.sft_trainer import SFTTrainer
from verl.trainer.sft_trainer_ray import SFTTrainer as RaySFTTrainer
from verl.utils import tensordict_utils as tu
from verl.utils.metric import Metric

from dft.data.training_format import rows_without_loss_tokens
from dft.train.losses.registry import LossConfig, get_loss_fn, loss_config_from
from dft.train.official_layout import use_official_layout
from dft.train.progress import step_bar
from dft.train.sft_datasets import PAIR_SIDES, PairCollator


class DFTTrainerMixin:
    """What both trainers add to verl's: our loss and its dataset, reduced metrics, and the run guards."""

    @cached_property
    def loss_config(self) -> LossConfig:
        # verl's two trainers build the engine and the dataloader in opposite orders; both read this
        return loss_config_from(self.config.get("loss"))

    def _build_dataset(self):
        super()._build_dataset()
        if self.loss_config.spec.data != "pairs":  # a pair's rows are its prompt and two responses: not counted
            report_rows_without_loss_tokens(self.config, self.train_dataset, verbose=getattr(self, "rank", 0) == 0)

    def _build_engine(self):
        super()._build_engine()
        self.loss_fn = get_loss_fn(self.loss_config)
        self.training_client.set_loss_fn(loss_fn=self.loss_fn)
        group = len(PAIR_SIDES) if self.loss_config.spec.data == "pairs" else 1
        self.steps_run = 0
        client = self.training_client
        flags = {"distillation_use_topk": True} if self.loss_config.spec.logits else None
        client.train_batch = with_reduced_metrics(client.train_batch, group, check=self.check_step, flags=flags)
        client.infer_batch = with_reduced_metrics(client.infer_batch, group, flags=flags)

    def check_step(self, metrics: dict) -> None:
        """Stop the run on a non-finite loss, naming the step, before ``fit`` logs or checkpoints it."""
        self.steps_run += 1
        loss = metrics.get("loss")
        if loss is not None and not math.isfinite(loss):
            step = getattr(self, "resume_global_step", 0) + self.steps_run
            raise NonFiniteLoss(
                f"step {step}: train/loss is {loss} (grad_norm {metrics.get('grad_norm')}); stopping before the "
                f"next optimizer step, without a checkpoint of these weights (checkpoints in "
                f"{self.config.trainer.default_local_dir} end before step {step})"
            )

    def _build_dataloader(self):
        super()._build_dataloader()
        # verl built its sampler over this run's data-parallel ranks (torchrun) or one (Ray's single controller)
        sampler = self.train_sampler
        if use_official_layout(self, sampler.num_replicas, sampler.rank) and getattr(self, "rank", 0) == 0:
            print("[dft] loss.normalization=official: each step's micro-batches are the official run's "
                  f"({self.loss_config.official_micro_batches} per rank; dft/train/official_layout.py)")  # fmt: skip
        if self.loss_config.spec.data == "pairs":
            # one dataset item is a pair; the batch the engine sees is chosen_0, rejected_0, chosen_1, ...
            for loader in (self.train_dataloader, getattr(self, "val_dataloader", None)):
                if loader is not None:
                    loader.collate_fn = PairCollator(self.collate_fn)

    def fit(self):
        """verl's ``fit`` with one progress bar over the run's steps (``dft.train.progress``), unless the run's
        checkpoints already reach ``total_training_steps``."""
        done, total = self.resume_global_step, self.total_training_steps
        if done >= total:
            print(f"[dft] {self.config.trainer.default_local_dir} holds step {done} of {total}: nothing to train")
            return None
        with step_bar(super().fit.__module__, total, done):
            return super().fit()


class DFTTrainer(DFTTrainerMixin, SFTTrainer):
    """verl's torchrun engine SFT trainer, with the loss from ``config.loss``."""


class DFTRayTrainer(DFTTrainerMixin, RaySFTTrainer):
    """verl's Ray engine SFT trainer, with the loss from ``config.loss``."""


class NonFiniteLoss(RuntimeError):
    """A training step produced a loss that is NaN or infinite; the run stops before its next optimizer step."""


def report_rows_without_loss_tokens(config: DictConfig, dataset, verbose: bool = True) -> list[int]:
    """Count the rows of a conversation dataset whose first trained token lies beyond ``data.max_length`` (or that
    have no assistant turn); print the count, refuse data where every row is such."""
    if not hasattr(dataset, "messages"):  # a custom dataset of another kind
        return []
    fmt, rows = config.data.get("format", "chat"), dataset.messages
    template = getattr(dataset, "template", None)
    empty = rows_without_loss_tokens(dataset.tokenizer, rows, fmt, config.data.max_length, template)
    where = f"data.train_files ({', '.join(map(str, dataset.parquet_files))})"
    if empty and len(empty) == len(rows):
        raise ValueError(f"{where}: no row has a loss token within data.max_length={config.data.max_length}")
    if empty and verbose:
        shown = ", ".join(map(str, empty[:10])) + (", ..." if len(empty) > 10 else "")
        print(f"[dft] {where}: {len(empty)} of {len(rows)} rows have no loss token within data.max_length="
              f"{config.data.max_length} (rows {shown}); they add nothing to the loss. Prepare the data with "
              "--max-length to skip them.")  # fmt: skip
    return empty


def reduce_metric_values(metrics: dict) -> dict:
    """Replace ``Metric`` values (one per rank, or one) by their aggregate, in place; return the dict."""
    for key, value in metrics.items():
        if isinstance(value, Metric):
            metrics[key] = float(value.aggregate())
        elif isinstance(value, list) and value and isinstance(value[0], Metric):
            metrics[key] = float(Metric.aggregate_dp(value))
    return metrics


def _reduce_output_metrics(output, check=None):
    if output is not None and "metrics" in output.keys():
        metrics = reduce_metric_values(tu.get(output, "metrics"))
        if check is not None:
            check(metrics)
    return output


def with_reduced_metrics(call, group_size: int = 1, check=None, flags: dict | None = None):
    """Wrap a training client's ``train_batch``/``infer_batch`` so the returned metrics are plain floats.

    Works for the SPMD worker (returns a TensorDict or None) and the Ray worker group (returns a future whose
    ``get()`` gives the TensorDict). ``group_size > 1`` keeps that many consecutive rows in one micro-batch;
    ``check(metrics)`` sees the reduced metrics of every call; ``flags`` are set on every batch whose loss is
    computed (``distillation_use_topk``: verl's engine hands the logits to the loss function first).
    """

    @wraps(call)
    def wrapped(data, *args, **kwargs):
        if group_size > 1:
            tu.assign_non_tensor(data, force_group_size=group_size)
        if flags and tu.get_non_tensor_data(data=data, key="compute_loss", default=True):
            tu.assign_non_tensor(data, **flags)
        output = call(data, *args, **kwargs)
        if hasattr(output, "get") and callable(output.get) and not hasattr(output, "keys"):
            return _ReducingFuture(output, check)
        return _reduce_output_metrics(output, check)

    return wrapped


class _ReducingFuture:
    def __init__(self, future, check=None):
        self._future, self._check = future, check

    def get(self):
        return _reduce_output_metrics(self._future.get(), self._check)
