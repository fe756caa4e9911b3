"""A training run's config, checked and adapted before verl builds anything: the loss, its data, the machine.

``prepare_config`` is what ``dft train``, ``dft train_ray`` and ``dft ref_logprobs`` run on the composed Hydra
config before any model loads: it resolves ``loss.full_weight_tokens``, points verl's ``data.custom_cls`` at the
dataset the loss reads, checks the data files, adapts to a CPU or to missing kernels, and scopes the run's logs.
"""

import os

from omegaconf import DictConfig, open_dict

from dft.core.io import parquet_schema
from dft.data.training_format import check_format, file_format
from dft.train.logprob_path import log_prob_path
from dft.train.losses.registry import LossConfig, loss_config_from, loss_errors
from dft.train.progress import scope_logs


def _is_local_path(path: str) -> bool:
    return "://" not in str(path)


def _local_files(files) -> list[str]:
    paths = [files] if isinstance(files, str) else list(files or [])
    return [os.path.expanduser(str(p)) for p in paths if _is_local_path(os.path.expanduser(str(p)))]


def _response_errors(field: str, path: str, messages_key: str, rows: int = 1000) -> list[str]:
    """The first ``rows`` rows of a conversation file hold at least one non-empty assistant response."""
    import pyarrow.parquet as pq

    batch = next(pq.ParquetFile(path).iter_batches(batch_size=rows, columns=[messages_key]), None)
    if batch is None:
        return []
    replies = [str(m.get("content") or "").strip() for row in batch.column(0).to_pylist() for m in row or []
               if m.get("role") == "assistant"]  # fmt: skip
    if any(replies):
        return []
    return [f"data.{field}: {path}: the responses of its first {batch.num_rows} rows are all empty, so training "
            "would learn nothing; prepare the data again (python -m dft data <name>)"]  # fmt: skip


def _file_errors(config: DictConfig, field: str, path: str, training: bool) -> list[str]:
    """One local file: it exists, is a parquet with rows, was prepared in ``data.format``, has responses."""
    if not os.path.exists(path):
        return [f"data.{field}: no such file: {path}"]
    if not path.endswith(".parquet"):
        return []
    names, why = parquet_schema(path)
    if why:
        return [f"data.{field}: {path} {why}"]
    fmt, prepared = config.data.get("format", "chat"), file_format(path)
    if prepared is not None and prepared != fmt:
        return [f"data.{field}: {path} was prepared in the {prepared!r} format, but data.format={fmt}: prepare it "
                f"with --format {fmt} (python -m dft data <name>) or set data.format={prepared}"]  # fmt: skip
    if prepared is None and fmt == "official" and training:
        return [f"data.{field}: {path} records no format, so it may not be in the official one data.format=official "
                "reads; prepare it with python -m dft data <name> --format official"]  # fmt: skip
    key = config.data.get("messages_key", "messages")
    return _response_errors(field, path, key) if training and key in names else []


def data_file_errors(config: DictConfig, training: bool = True) -> list[str]:
    """The run's local data files that are missing, unreadable, empty, prepared in another format or (``training``)
    without a response, and training files that hold less than one batch (verl would die with a ZeroDivisionError:
    an epoch of zero steps). The one check of the data files: the command line runs it before any model loads
    (``dft.cli.validate``), ``prepare_config`` for a run started from Python."""
    import pyarrow.parquet as pq

    errors = [error for field in ("train_files", "val_files") for path in _local_files(config.data.get(field))
              for error in _file_errors(config, field, path, training)]  # fmt: skip
    train = _local_files(config.data.get("train_files"))
    if not errors and training and train and all(p.endswith(".parquet") for p in train):
        rows = sum(pq.read_metadata(p).num_rows for p in train)
        if rows < config.data.train_batch_size:
            errors.append(f"data.train_files hold {rows} rows, fewer than data.train_batch_size="
                          f"{config.data.train_batch_size}: not one full batch ({', '.join(train)})")  # fmt: skip
    return errors


def _installed(package: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(package) is not None


def adapt_to_machine(config: DictConfig) -> list[str]:
    """Adjust what a CPU-only machine, or a missing flash-attn or liger-kernel, cannot run; return what was changed.

    Nothing changes on a CUDA machine with flash-attn (and, where asked for, liger-kernel) installed.
    """
    from dft.train.cpu_platform import on_cpu

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
    have the loss's columns (their format is checked by :func:`data_file_errors`)."""
    import pyarrow.parquet as pq

    from dft.train.sft_datasets import dataset_for

    fmt = check_format(config.data.get("format", "chat"))
    name = dataset_for(fmt, loss.spec.data)
    with open_dict(config):
        custom = config.data.setdefault("custom_cls", {})
        if name and not custom.get("path"):
            custom["path"], custom["name"] = "pkg://dft.train.sft_datasets", name
    for field, path in _local_parquets(config):
        missing = [c for c in loss.spec.columns if c not in pq.read_schema(path).names]
        if missing:
            raise ValueError(
                f"data.{field}: {path} lacks column(s) {missing} that loss.name={loss.name} needs; "
                "reference log-probs are added by `python -m dft ref_logprobs` (the top-K for asft: ref.topk=K)"
            )


def prepare_config(config: DictConfig, training: bool = True) -> DictConfig:
    """Validate what verl would only discover late (loss, data files) and adapt to the machine; ``training=False``
    (scoring data with ``dft.train.ref_scoring``) accepts data smaller than one training batch."""
    from dft.train.full_weight import resolve_full_weight_tokens

    # the command line ran the same checks; this covers a trainer started from Python
    errors = loss_errors(config) + data_file_errors(config, training)
    if errors:
        raise ValueError("; ".join(errors))
    resolve_full_weight_tokens(config)
    loss = loss_config_from(config.get("loss"))
    choose_dataset(config, loss)
    for change in adapt_to_machine(config):
        print(f"[dft] {change}")
    print(f"[dft] log-prob path: {log_prob_path(config)}")
    check_sequence_parallel(config)
    if training:
        print(f"[dft] logs in {scope_logs(config)}")
    return config
