"""verl's engine SFT trainers with the loss chosen by ``loss.name``; everything else is verl's.

``DFTTrainer`` subclasses ``verl.trainer.sft_trainer.SFTTrainer`` (torchrun / SPMD) and ``DFTRayTrainer``
subclasses ``verl.trainer.sft_trainer_ray.SFTTrainer`` (single controller over Ray). Each one builds verl's
engine as verl does, then swaps the loss with ``training_client.set_loss_fn``.

One gap is filled here: verl's SFT ``fit`` logs the metrics a loss returns as it receives them, a list of
``verl.utils.metric.Metric`` per data-parallel rank, which no logger can print. The trainers reduce such
values to floats (``Metric.aggregate_dp``, as verl's PPO path does) before ``fit`` sees them.

Losses that need reference log-probs (``iw_sft``, ``dpo``) read them through a dataset from ``dft.datasets``,
chosen with verl's ``data.custom_cls``. For ``dpo`` the loader yields pairs as consecutive rows, and every batch
carries verl's ``force_group_size=2`` so that the engine's micro-batching (fixed or dynamic) never splits a pair.
"""

import os
from functools import cached_property, wraps

from omegaconf import DictConfig, open_dict
from verl.utils import tensordict_utils as tu
from verl.utils.metric import Metric

from dft.datasets import PAIR_SIDES, PairCollator, ref_column
from dft.losses import LossConfig, get_loss_fn, loss_config_from


def reduce_metric_values(metrics: dict) -> dict:
    """Replace ``Metric`` values (one per rank, or one) by their aggregate, in place; return the dict."""
    for key, value in metrics.items():
        if isinstance(value, Metric):
            metrics[key] = float(value.aggregate())
        elif isinstance(value, list) and value and isinstance(value[0], Metric):
            metrics[key] = float(Metric.aggregate_dp(value))
    return metrics


def _reduce_output_metrics(output):
    if output is not None and "metrics" in output.keys():
        reduce_metric_values(tu.get(output, "metrics"))
    return output


def with_reduced_metrics(call, group_size: int = 1):
    """Wrap a training client's ``train_batch``/``infer_batch`` so the returned metrics are plain floats.

    Works for the SPMD worker (returns a TensorDict or None) and the Ray worker group (returns a future whose
    ``get()`` gives the TensorDict). ``group_size > 1`` keeps that many consecutive rows in one micro-batch.
    """

    @wraps(call)
    def wrapped(data, *args, **kwargs):
        if group_size > 1:
            tu.assign_non_tensor(data, force_group_size=group_size)
        output = call(data, *args, **kwargs)
        if hasattr(output, "get") and callable(output.get) and not hasattr(output, "keys"):
            return _ReducingFuture(output)
        return _reduce_output_metrics(output)

    return wrapped


class _ReducingFuture:
    def __init__(self, future):
        self._future = future

    def get(self):
        return _reduce_output_metrics(self._future.get())


class _LossSwap:
    """The part both trainers share: after verl builds its engine, set our loss and reduce its metrics."""

    @cached_property
    def loss_config(self) -> LossConfig:
        # verl's two trainers build the engine and the dataloader in opposite orders; both read this
        return loss_config_from(self.config.get("loss"))

    def _build_engine(self):
        super()._build_engine()
        self.loss_fn = get_loss_fn(self.loss_config)
        self.training_client.set_loss_fn(loss_fn=self.loss_fn)
        group = len(PAIR_SIDES) if self.loss_config.needs_pairs else 1
        self.training_client.train_batch = with_reduced_metrics(self.training_client.train_batch, group)
        self.training_client.infer_batch = with_reduced_metrics(self.training_client.infer_batch, group)

    def _build_dataloader(self):
        super()._build_dataloader()
        if self.loss_config.needs_pairs:
            # one dataset item is a pair; the batch the engine sees is chosen_0, rejected_0, chosen_1, ...
            for loader in (self.train_dataloader, getattr(self, "val_dataloader", None)):
                if loader is not None:
                    loader.collate_fn = PairCollator(self.collate_fn)


def _spmd_trainer_cls():
    from verl.trainer.sft_trainer import SFTTrainer

    class DFTTrainer(_LossSwap, SFTTrainer):
        """verl's torchrun engine SFT trainer, with the loss from ``config.loss``."""

    return DFTTrainer


def _ray_trainer_cls():
    from verl.trainer.sft_trainer_ray import SFTTrainer

    class DFTRayTrainer(_LossSwap, SFTTrainer):
        """verl's Ray engine SFT trainer, with the loss from ``config.loss``."""

    return DFTRayTrainer


def _is_local_path(path: str) -> bool:
    return "://" not in str(path)


def _local_files(files) -> list[str]:
    paths = [files] if isinstance(files, str) else list(files or [])
    return [os.path.expanduser(str(p)) for p in paths if _is_local_path(os.path.expanduser(str(p)))]


def check_data_files(config: DictConfig, training: bool = True) -> None:
    """Fail before any model is loaded if a local data file is missing, or (``training``) the training files hold
    less than one batch (verl would die with a ZeroDivisionError: an epoch of zero steps)."""
    import pyarrow.parquet as pq

    for field in ("train_files", "val_files"):
        for path in _local_files(config.data.get(field)):
            if not os.path.exists(path):
                raise FileNotFoundError(f"data.{field}: no such file: {path}")
    train = _local_files(config.data.get("train_files"))
    if training and train and all(p.endswith(".parquet") for p in train):
        rows = sum(pq.read_metadata(p).num_rows for p in train)
        if rows < config.data.train_batch_size:
            raise ValueError(f"data.train_files hold {rows} rows, fewer than data.train_batch_size="
                             f"{config.data.train_batch_size}: not one full batch ({', '.join(train)})")  # fmt: skip


def _flash_attn_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("flash_attn") is not None


def adapt_to_machine(config: DictConfig) -> list[str]:
    """Adjust what a CPU-only machine or a missing flash-attn cannot run; return what was changed.

    Nothing changes on a CUDA machine with flash-attn installed.
    """
    from dft.cpu_platform import on_cpu

    changes = []
    with open_dict(config):
        override = config.model.setdefault("override_config", {})
        if not _flash_attn_installed() and "attn_implementation" not in override:
            override["attn_implementation"] = "sdpa"
            changes.append("model.override_config.attn_implementation=sdpa (flash-attn is not installed)")
        if on_cpu():
            wanted = {"trainer.device": "cpu", "engine.strategy": "fsdp2", "engine.use_torch_compile": False}
            for key, value in wanted.items():
                section, field = key.split(".")
                if config[section][field] != value:
                    # FSDP1 needs an accelerator's device_id; torch.compile is slow to warm up on CPU.
                    changes.append(f"{key}={value} (was {config[section][field]}; CPU platform)")
                    config[section][field] = value
    return changes


def check_sequence_parallel(config: DictConfig) -> None:
    """Refuse Ulysses sequence parallelism without flash-attention instead of training on wrong attention.

    verl 0.9.1 installs its Ulysses all-to-all only into transformers' flash-attention forward
    (``verl.models.transformers.monkey_patch``); with SDPA or eager attention every rank would attend to its
    own slice of the sequence only, and the run would go on with a silently wrong model.
    """
    sp_size = config.engine.get("ulysses_sequence_parallel_size", 1)
    attention = config.model.get("override_config", {}).get("attn_implementation", "flash_attention_2")
    if sp_size > 1 and not str(attention).startswith("flash_attention"):
        raise ValueError(
            f"engine.ulysses_sequence_parallel_size={sp_size} needs flash-attention, but attention is "
            f"{attention!r}: verl applies Ulysses only to flash-attention, so each rank would attend to its own "
            "shard. Install flash-attn (GPU) or set engine.ulysses_sequence_parallel_size=1."
        )


DATASET_FOR_LOSS = {"iw_sft": "ReferenceScoredDataset", "dpo": "PreferencePairDataset"}


def required_columns(loss: LossConfig) -> list[str]:
    """The data columns a loss reads besides verl's conversation."""
    if loss.needs_pairs:
        return ["prompt", *PAIR_SIDES, *(ref_column(side) for side in PAIR_SIDES)]
    return [ref_column()] if loss.needs_reference else []


def choose_dataset(config: DictConfig, loss: LossConfig) -> None:
    """Point verl's ``data.custom_cls`` at the dataset the loss needs and check the files have its columns."""
    import pyarrow.parquet as pq

    if loss.name not in DATASET_FOR_LOSS:
        return
    with open_dict(config):
        custom = config.data.setdefault("custom_cls", {})
        if not custom.get("path"):
            custom["path"], custom["name"] = "pkg://dft.datasets", DATASET_FOR_LOSS[loss.name]
    if config.data.get("pad_mode", "no_padding") != "no_padding":
        raise ValueError(f"loss.name={loss.name} needs data.pad_mode=no_padding (got {config.data.pad_mode})")
    for field in ("train_files", "val_files"):
        for path in _local_files(config.data.get(field)):
            if path.endswith(".parquet"):
                missing = [c for c in required_columns(loss) if c not in pq.read_schema(path).names]
                if missing:
                    raise ValueError(
                        f"data.{field}: {path} lacks column(s) {missing} that loss.name={loss.name} needs; "
                        "reference log-probs are added by `python -m dft.ref_logprobs`"
                    )


def prepare_config(config: DictConfig, training: bool = True) -> DictConfig:
    """Validate what verl would only discover late (loss, data files) and adapt to the machine; ``training=False``
    (scoring data with ``dft.ref_logprobs``) accepts data smaller than one training batch."""
    loss = loss_config_from(config.get("loss"))
    check_data_files(config, training)
    choose_dataset(config, loss)
    for change in adapt_to_machine(config):
        print(f"[dft] {change}")
    from dft.fused import log_prob_path  # refuses fused-kernel settings verl cannot train

    print(f"[dft] log-prob path: {log_prob_path(config)}")
    check_sequence_parallel(config)
    return config
