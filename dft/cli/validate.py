"""Checks of a composed config that run before any model loads (called by :func:`dft.cli.preflight.preflight`).

Each check returns a list of messages that name the key (or file) and say what to do; ``validate`` collects them
for one command. Nothing here imports torch or verl, so a bad value is refused in seconds. What only verl can
judge (the dataset's rows, the engine's settings) is left to the trainer's own checks (``dft.train.trainer``).
"""

from __future__ import annotations

import math
import os
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

from omegaconf import OmegaConf

from dft.core.io import parquet_schema

# a hub id: one "/" between an organisation and a name (a local path that does not exist has another shape, or a
# first part that is a local folder)
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
PROBE_TIMEOUT_S = 3.0


def trackers() -> list[str]:
    """verl's ``Tracking.supported_backend`` (which verl checks only once the model is built), read from its source
    without importing verl."""
    import ast
    import importlib.util

    source = Path(importlib.util.find_spec("verl").origin).parent / "utils" / "tracking.py"
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "supported_backend":
            return list(ast.literal_eval(node.value))
    return []


def _get(config, key: str):
    return OmegaConf.select(config, key, throw_on_missing=False)


def number(config, key: str, minimum: float | None = None, integer: bool = False, optional: bool = False,
           above: bool = False) -> list[str]:  # fmt: skip
    """``key`` is a number (an integer if ``integer``) of at least ``minimum`` (above it if ``above``)."""
    value = _get(config, key)
    if value is None and optional:
        return []
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        return [f"{key}={value!r} is not {kind}{'; null for none' if optional else ''}"]
    if not math.isfinite(value):
        return [f"{key}={value} is not a finite number"]
    if minimum is not None and (value <= minimum if above else value < minimum):
        return [f"{key}={value} must be {'above' if above else 'at least'} {minimum}"]
    return []


def choice(config, key: str, valid) -> list[str]:
    value = _get(config, key)
    values = list(value) if OmegaConf.is_list(value) or isinstance(value, list) else [value]
    bad = [v for v in values if v not in valid]
    return [f"{key}: unknown {', '.join(map(repr, bad))}; valid: {', '.join(map(str, valid))}"] if bad else []


def limit(config, key: str = "limit") -> list[str]:
    """``limit`` is null (everything) or a positive count: 0 would silently mean "nothing" or "all"."""
    if _get(config, key) == 0:
        return [f"{key}=0 selects nothing: give a positive number of problems, or {key}=null for all of them"]
    return number(config, key, minimum=1, integer=True, optional=True)


# ---------------------------------------------------------------------------------------------------------------
# Models: a local folder that exists, or a hub id that can be fetched (or is cached)
# ---------------------------------------------------------------------------------------------------------------


def _looks_local(model: str) -> bool:
    path = Path(os.path.expanduser(model))
    return path.exists() or not HUB_ID.match(model) or Path(model.split("/")[0]).is_dir()


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def _reachable(url: str) -> str | None:
    """None if a TCP connection to the endpoint opens within PROBE_TIMEOUT_S, else why not."""
    parts = urlparse(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _cached(repo: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo, "config.json"), str)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def hub_model(key: str, repo: str) -> list[str]:
    """A hub id is usable if it is cached, or the hub answers; with no network and no cached copy, say so now
    (the hub client would retry for about a minute). A cached copy without network is used offline."""
    fetch = f"download it where there is a network (hf download {repo}) and pass the local folder"
    if _offline():
        if _cached(repo):
            return []
        return [f"{key}={repo}: HF_HUB_OFFLINE is set and the model is not in the Hugging Face cache; {fetch}"]
    why = _reachable(hub_endpoint())
    if why is None:
        return []
    if _cached(repo):
        os.environ["HF_HUB_OFFLINE"] = "1"
        print(f"[dft] {hub_endpoint()} is not reachable ({why}): using the cached {repo} offline")
        return []
    return [f"{key}={repo}: no network: {hub_endpoint()} is not reachable ({why}) and the model is not in the "
            f"Hugging Face cache; {fetch}, or set HF_ENDPOINT to a mirror"]  # fmt: skip


def model(config, key: str, run_folders: bool = True) -> list[str]:
    """``key`` names a local model folder (or, with ``run_folders``, a verl run folder) or a usable hub id."""
    value = _get(config, key)
    if value is None or not str(value).strip():
        return [f"{key} is not set: give a hub id (org/name) or a local model folder"]
    value = str(value)
    if not _looks_local(value):
        return hub_model(key, value)
    path = Path(os.path.expanduser(value))
    if not path.exists():
        return [f"{key}={value}: no such folder (a local model path; a hub id has the form org/name)"]
    if not (path / "config.json").is_file():
        from dft.models.checkpoints import latest_step_dir

        if not (run_folders and latest_step_dir(path) is not None):
            kind = "a Hugging Face model folder or a verl run folder" if run_folders else "a Hugging Face model folder"
            return [f"{key}={value}: no config.json in it; give {kind}"]
        return []
    weights = [p for p in path.iterdir() if p.name.endswith((".safetensors", ".bin", ".pt"))]
    if not weights:
        return [f"{key}={value}: config.json but no weights (*.safetensors, *.bin) in it; copy the weights in, or "
                "give the folder that holds them"]  # fmt: skip
    return []


# ---------------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------------


def _files(value) -> list[str]:
    if value is None:
        return []
    values = [value] if isinstance(value, str) else list(value)
    return [os.path.expanduser(str(v)) for v in values if "://" not in str(v)]


def parquet_columns(key: str, paths: list[str], columns: list[list[str]], what: str, missing: bool = True) -> list[str]:
    """Every file in ``paths`` holds one of the column sets in ``columns`` (a missing one: ``missing`` says so)."""
    errors = []
    for path in paths:
        if not os.path.exists(path):
            errors += [f"{key}: no such file: {path}"] if missing else []
        elif path.endswith(".parquet"):
            names, why = parquet_schema(path)
            names = set(names)
            if why:
                errors.append(f"{key}: {path} {why}")
            elif not any(set(c) <= names for c in columns):
                wanted = " or ".join("(" + ", ".join(c) + ")" for c in columns)
                errors.append(f"{key}: {path} has columns {sorted(names)}, not {wanted}; {what}")
    return errors


# ---------------------------------------------------------------------------------------------------------------
# Per command
# ---------------------------------------------------------------------------------------------------------------


def prompt_length_errors(config, rows: int = 256) -> list[str]:
    """``data.max_length`` leaves room for a response in the first ``rows`` rows: their user turns alone, tokenized
    by the model's ``tokenizer.json`` (the tokenizers library: no model, no transformers), are a lower bound of
    each prompt; refused when every one is at least ``data.max_length`` (nothing would be trained)."""
    import pyarrow.parquet as pq

    folder, limit = Path(os.path.expanduser(str(_get(config, "model.path")))), _get(config, "data.max_length")
    files = [f for f in _files(_get(config, "data.train_files")) if f.endswith(".parquet")]
    key = str(_get(config, "data.messages_key") or "messages")
    if not (folder / "tokenizer.json").is_file() or not files or key not in pq.read_schema(files[0]).names:
        return []
    from tokenizers import Tokenizer

    batch = next(pq.ParquetFile(files[0]).iter_batches(batch_size=rows, columns=[key]))
    users = [
        " ".join(m["content"] or "" for m in row if m["role"] != "assistant") for row in batch.column(0).to_pylist()
    ]
    shortest = min(len(e.ids) for e in Tokenizer.from_file(str(folder / "tokenizer.json")).encode_batch(users))
    if shortest < limit:
        return []
    return [f"data.max_length={limit}: every prompt of the first {len(users)} rows of {files[0]} is at least "
            f"{shortest} tokens, so no response token would be trained; raise data.max_length"]  # fmt: skip


def training(config, scoring: bool = False) -> list[str]:
    """``dft train``, ``dft train_ray`` and (``scoring``) ``dft ref_logprobs``."""
    from dft.train.columns import PAIR_TEXT_COLUMNS
    from dft.train.config import data_file_errors
    from dft.train.losses.registry import loss_errors, losses

    errors = loss_errors(config) + data_file_errors(config, training=not scoring)
    errors += number(config, "optim.lr", minimum=0, above=True)
    errors += number(config, "data.train_batch_size", minimum=1, integer=True)
    errors += number(config, "data.micro_batch_size_per_gpu", minimum=1, integer=True)
    errors += number(config, "data.max_length", minimum=1, integer=True)
    errors += number(config, "trainer.total_epochs", minimum=1, integer=True)
    errors += number(config, "trainer.total_training_steps", minimum=1, integer=True, optional=True)
    supported = trackers()
    errors += choice(config, "trainer.logger", supported) if supported else []
    messages = [str(_get(config, "data.messages_key") or "messages")]
    pairs = list(PAIR_TEXT_COLUMNS)
    spec = losses().get(_get(config, "loss.name"))
    needs = [pairs] if spec is not None and spec.data == "pairs" and not scoring else [messages]
    how = "prepare it with python -m dft data <name> (SFT rows) or python -m dft data rft (pairs)"
    for field in ("train_files", "val_files"):
        errors += parquet_columns(f"data.{field}", _files(_get(config, f"data.{field}")),
                                  needs + ([pairs] if scoring else []), how, missing=False)  # fmt: skip
    if scoring:
        errors += number(config, "ref.rows_per_step", minimum=1, integer=True)
        errors += number(config, "ref.topk", minimum=0, integer=True, optional=True)
        if not _get(config, "ref.output"):
            errors.append("ref.output: give the parquet to write, e.g. ref.output=data/train.ref.parquet")
    # training starts from a Hugging Face folder or hub id; scoring also takes a run folder (its latest checkpoint)
    errors += model(config, "model.path", run_folders=scoring)
    if errors:
        return errors
    errors = prompt_length_errors(config)
    if errors:
        return errors
    from dft.train.run_record import run_errors

    return run_errors(config, scoring)


def sampling(config) -> list[str]:
    """What ``dft eval`` and ``dft data rft`` share: sampling, backend, limits, grader."""
    from dft.eval.backends import BACKENDS
    from dft.eval.graders import GRADERS

    errors = number(config, "sampling.n", minimum=1, integer=True) + choice(config, "grader", GRADERS)
    errors += number(config, "sampling.temperature", minimum=0)
    errors += number(config, "sampling.top_p", minimum=0, above=True)
    errors += number(config, "sampling.max_new_tokens", minimum=1, integer=True)
    errors += number(config, "sampling.seed", integer=True)
    errors += number(config, "chunk_size", minimum=1, integer=True)
    errors += number(config, "data_parallel", minimum=1, integer=True)
    errors += number(config, "gpus_per_replica", minimum=0)
    errors += number(config, "grading.workers", minimum=1, integer=True)
    errors += number(config, "grading.timeout_s", minimum=0, above=True, optional=True)
    errors += number(config, "hf.batch_size", minimum=1, integer=True)
    if (_get(config, "sampling.top_p") or 0) > 1:
        errors.append(f"sampling.top_p={_get(config, 'sampling.top_p')} must be at most 1")
    return errors + choice(config, "backend", list(BACKENDS)) + limit(config)


def benchmark_source(config) -> list[str]:
    """``source=hub`` needs the hub (the datasets client would retry for long): say so now, without a network."""
    if _get(config, "source") != "hub":
        return []
    why = "HF_HUB_OFFLINE is set" if _offline() else _reachable(hub_endpoint())
    if why is None:
        return []
    return [f"source=hub: no network ({hub_endpoint()}: {why}); use source=local (the benchmarks in data_dir, "
            "default ../shared/data) or set HF_ENDPOINT to a mirror"]  # fmt: skip


def evaluation(config) -> list[str]:
    from dft.eval.benchmarks import BENCHMARKS, PAPER, benchmark_names
    from dft.models.prompts import AUTO, PROMPT_TEMPLATES

    errors = sampling(config) + choice(config, "prompt", [AUTO, *PROMPT_TEMPLATES])
    value = _get(config, "benchmarks")
    if isinstance(value, str) and value != PAPER:
        errors.append(f"benchmarks={value}: give {PAPER} (the paper's five) or a list, e.g. benchmarks=[{value}]")
    elif value:
        errors += choice(OmegaConf.create({"benchmarks": benchmark_names(value)}), "benchmarks", list(BENCHMARKS))
    errors += choice(config, "source", ["local", "hub"]) + benchmark_source(config)
    if not value:
        errors.append(f"benchmarks is empty: name at least one of {', '.join(BENCHMARKS)}")
    return errors + model(config, "model")


def rejection_sampling(config) -> list[str]:
    from dft.data.training_format import FORMATS

    errors = sampling(config) + choice(config, "format", list(FORMATS))
    source = _get(config, "input")
    if source is None:
        errors.append("input is not set: give a prepared SFT parquet (messages, id, gold) or a jsonl of problem, gold")
    elif not os.path.exists(os.path.expanduser(str(source))):
        errors.append(f"input: no such file: {source}")
    else:
        columns = [["messages"], ["problem"], ["extra_info", "reward_model"]]
        how = ("give a prepared SFT parquet (python -m dft data <name>), an RL parquet (python -m dft data rl) or "
               "problems with a gold answer (problem, gold)")  # fmt: skip
        errors += parquet_columns("input", _files(source), columns, how)
    return errors + model(config, "model")


def ray_training(config) -> list[str]:
    """``dft train_ray``: also refuse verl's batch balancing under the official normalisation."""
    errors = training(config)
    if _get(config, "loss.normalization") == "official" and _get(config, "trainer.balance_batch"):
        errors.append("trainer.balance_batch=True: verl's Ray trainer would regroup each batch's rows by length "
                      "across ranks and micro-batches, changing loss.normalization=official's per-micro-batch "
                      "means; set trainer.balance_batch=False (setting=paper does)")  # fmt: skip
    return errors


def diagnosis(config) -> list[str]:
    """``dft diagnose``: what scoring checks, a report folder, and a positive ``limit``."""
    errors = [e for e in training(config, scoring=True) if not e.startswith("ref.output")]
    if not _get(config, "out"):
        errors.append("out is not set: give the report's folder, e.g. out=runs/diagnose")
    return errors + limit(config)


CHECKS = {
    "train": training,
    "train_ray": ray_training,
    "ref_logprobs": lambda config: training(config, scoring=True),
    "diagnose": diagnosis,
    "eval": evaluation,
    "data rft": rejection_sampling,
}


def validate(command: str, config) -> list[str]:
    """Every problem found in ``config`` for the Hydra command ``command`` (empty: go ahead), each once."""
    return list(dict.fromkeys(CHECKS[command](config)))
