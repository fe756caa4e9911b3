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

The dataset comes from the loss's registry entry (``dft.losses.LossSpec.data``) and ``data.format``
(``dft.formats``): ``dft.datasets.dataset_for`` names the class, set through verl's ``data.custom_cls``. For
``dpo`` the loader yields pairs as consecutive rows, and every batch carries verl's ``force_group_size=2`` so
that the engine's micro-batching (fixed or dynamic) never splits a pair.
"""

import math
import os
from functools import cached_property, wraps

from omegaconf import DictConfig, open_dict
from verl.utils import tensordict_utils as tu
from verl.utils.metric import Metric

from dft.datasets import PAIR_SIDES, PairCollator, dataset_for
from dft.formats import check_format, file_format, rows_without_loss_tokens
from dft.losses import LossConfig, get_loss_fn, loss_config_from
from dft.official_layout import use_official_layout
from dft.progress import scope_logs, step_bar


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


class NonFiniteLoss(RuntimeError):
    """A training step produced a loss that is NaN or infinite; the run stops before its next optimizer step."""


class _DFTTrainer:
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
                  f"({self.loss_config.official_micro_batches} per rank; dft/official_layout.py)")  # fmt: skip
        if self.loss_config.spec.data == "pairs":
            # one dataset item is a pair; the batch the engine sees is chosen_0, rejected_0, chosen_1, ...
            for loader in (self.train_dataloader, getattr(self, "val_dataloader", None)):
                if loader is not None:
                    loader.collate_fn = PairCollator(self.collate_fn)

    def fit(self):
        """verl's ``fit`` with one progress bar over the run's steps (``dft.progress``), unless the run's
        checkpoints already reach ``total_training_steps``."""
        done, total = self.resume_global_step, self.total_training_steps
        if done >= total:
            print(f"[dft] {self.config.trainer.default_local_dir} holds step {done} of {total}: nothing to train")
            return None
        with step_bar(super().fit.__module__, total, done):
            return super().fit()


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


def _spmd_trainer_cls():
    from verl.trainer.sft_trainer import SFTTrainer

    class DFTTrainer(_DFTTrainer, SFTTrainer):
        """verl's torchrun engine SFT trainer, with the loss from ``config.loss``."""

    return DFTTrainer


def _ray_trainer_cls():
    from verl.trainer.sft_trainer_ray import SFTTrainer

    class DFTRayTrainer(_DFTTrainer, SFTTrainer):
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


def _installed(package: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(package) is not None


def adapt_to_machine(config: DictConfig) -> list[str]:
    """Adjust what a CPU-only machine, or a missing flash-attn or liger-kernel, cannot run; return what was changed.

    Nothing changes on a CUDA machine with flash-attn (and, where asked for, liger-kernel) installed.
    """
    from dft.cpu_platform import on_cpu

    changes = []
    with open_dict(config):
        override = config.model.setdefault("override_config", {})
        if not _installed("flash_attn") and "attn_implementation" not in override:
            override["attn_implementation"] = "sdpa"
            changes.append("model.override_config.attn_implementation=sdpa (flash-attn is not installed)")
        if config.model.get("use_liger") and not _installed("liger_kernel"):
            # liger's kernels change speed and memory, not the objective
            config.model.use_liger = False
            changes.append("model.use_liger=False (liger-kernel is not installed)")
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


def _local_parquets(config: DictConfig) -> list[tuple[str, str]]:
    return [(field, path) for field in ("train_files", "val_files") for path in _local_files(config.data.get(field))
            if path.endswith(".parquet")]  # fmt: skip


def choose_dataset(config: DictConfig, loss: LossConfig) -> None:
    """Point verl's ``data.custom_cls`` at the dataset for ``data.format`` and the loss, and check that the files
    have the loss's columns and were prepared in that format."""
    import pyarrow.parquet as pq

    fmt = check_format(config.data.get("format", "chat"))
    name = dataset_for(fmt, loss.spec.data)
    with open_dict(config):
        custom = config.data.setdefault("custom_cls", {})
        if name and not custom.get("path"):
            custom["path"], custom["name"] = "pkg://dft.datasets", name
    if loss.spec.data != "conversation" and config.data.get("pad_mode", "no_padding") != "no_padding":
        raise ValueError(f"loss.name={loss.name} needs data.pad_mode=no_padding (got {config.data.pad_mode})")
    for field, path in _local_parquets(config):
        missing = [c for c in loss.spec.columns if c not in pq.read_schema(path).names]
        if missing:
            raise ValueError(
                f"data.{field}: {path} lacks column(s) {missing} that loss.name={loss.name} needs; "
                "reference log-probs are added by `python -m dft.ref_logprobs` (the top-K for asft: ref.topk=K)"
            )
        prepared = file_format(path)
        if prepared is not None and prepared != fmt:
            raise ValueError(
                f"data.{field}: {path} was prepared in the {prepared!r} format, but data.format={fmt}: prepare it "
                f"with --format {fmt} (dft.data) or set data.format={prepared}"
            )


def check_normalization(config: DictConfig, loss: LossConfig) -> None:
    """The official normalisation averages per micro-batch of fixed size, as the official trainer did."""
    if loss.normalization == "official" and config.data.get("use_dynamic_bsz", False):
        raise ValueError(
            "loss.normalization=official takes a mean per micro-batch of data.micro_batch_size_per_gpu rows: set "
            "data.use_dynamic_bsz=False (setting=paper does)"
        )


def prepare_config(config: DictConfig, training: bool = True) -> DictConfig:
    """Validate what verl would only discover late (loss, data files) and adapt to the machine; ``training=False``
    (scoring data with ``dft.ref_logprobs``) accepts data smaller than one training batch."""
    from dft.full_weight import check_logits_loss, resolve_full_weight_tokens

    resolve_full_weight_tokens(config)
    loss = loss_config_from(config.get("loss"))
    check_logits_loss(config, loss)
    check_data_files(config, training)
    check_normalization(config, loss)
    choose_dataset(config, loss)
    for change in adapt_to_machine(config):
        print(f"[dft] {change}")
    from dft.fused import log_prob_path  # refuses fused-kernel settings verl cannot train

    print(f"[dft] log-prob path: {log_prob_path(config)}")
    check_sequence_parallel(config)
    if training:
        print(f"[dft] logs in {scope_logs(config)}")
    return config
