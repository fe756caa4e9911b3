"""What made a training run's folder, or a scored parquet: the config keys that change the result and a digest of
the data files, recorded with the evaluation's fingerprint (:func:`dft.eval.fingerprint.claim`), so resuming never
mixes two runs and nothing is overwritten by another run.

``dft train`` records it in ``trainer.default_local_dir/fingerprint.json``; a rerun into that folder with another
model, loss, optimizer, data format or data is refused naming the differing keys (more steps or epochs extend the
same run). ``dft ref_logprobs`` records it in ``<ref.output>.parts/fingerprint.json`` while it scores, and in the
written parquet's metadata; an output another config or other data made is refused, and so is an output that is
one of its inputs. The command line checks (:func:`run_errors`, writing nothing) before any model loads; the
trainers claim (:func:`claim_run`) before they build anything.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from omegaconf import OmegaConf

from dft.eval.fingerprint import check, claim, differences, files_digest

DATA_KEYS = ("data.max_length", "data.truncation", "data.messages_key", "data.format", "data.prompt_template")
RUN_KEYS = ("model.path", "loss", "optim", "data.train_batch_size", *DATA_KEYS, "data.train_max_samples",
            "trainer.seed")  # fmt: skip
SCORE_KEYS = ("model.path", *DATA_KEYS, "ref.topk")
GROWS = ("total_training_steps",)  # optim keys a longer run may change
METADATA = b"dft_fingerprint"
RUN_FOLDER = ("trainer.default_local_dir=", "global_step_*", "checkpoints")
PARTS = ("ref.output=", "rank*.jsonl", "scored rows")


def _value(config, key: str):
    value = OmegaConf.select(config, key, throw_on_missing=False)
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def train_files(config) -> list[str]:
    files = _value(config, "data.train_files")
    files = [files] if isinstance(files, str) else list(files or [])
    return [os.path.expanduser(str(f)) for f in files]


def record(config, scoring: bool = False) -> dict:
    """The keys that make a run (or a scoring) what it is, and a digest of its training files."""
    out = {key: _value(config, key) for key in (SCORE_KEYS if scoring else RUN_KEYS)}
    if isinstance(out.get("optim"), dict):
        out["optim"] = {k: v for k, v in out["optim"].items() if k not in GROWS}
    model = str(out["model.path"])
    out["model.path"] = str(Path(model).expanduser().resolve()) if Path(model).expanduser().exists() else model
    local = [f for f in train_files(config) if "://" not in f]
    out["data.train_files_sha256"] = files_digest(local) if local and all(os.path.isfile(f) for f in local) else None
    return out


def output_path(config) -> Path:
    return Path(os.path.expanduser(str(_value(config, "ref.output"))))


def _output_errors(config, fingerprint: dict) -> list[str]:
    """``ref.output`` is none of its inputs, and an existing one was written by this same scoring."""
    import pyarrow.parquet as pq

    output = output_path(config)
    if any(Path(f).resolve() == output.resolve() for f in train_files(config) if "://" not in f):
        return [f"ref.output={output} is one of data.train_files: scoring would overwrite its own input; "
                "give a new file, e.g. ref.output=data/train.ref.parquet"]  # fmt: skip
    if not output.exists():
        return []
    try:
        recorded = (pq.read_schema(output).metadata or {}).get(METADATA)
    except Exception:  # noqa: BLE001  (not a parquet file)
        recorded = None
    if recorded is None:
        return [f"ref.output={output} exists and records no scoring that made it: give a new file, or remove it"]
    differing = differences(json.loads(recorded), fingerprint)
    if differing:
        return [f"ref.output={output} was written by another scoring: {'; '.join(differing)}; give a new file, "
                "or remove it"]  # fmt: skip
    return []


def run_errors(config, scoring: bool = False) -> list[str]:
    """Why the run's folder (or the scoring's output) belongs to another run; writes nothing."""
    fingerprint = record(config, scoring)
    if scoring:
        errors = _output_errors(config, fingerprint)
        folder, (key, contents, what) = Path(f"{output_path(config)}.parts"), PARTS
    else:
        errors, folder = [], Path(os.path.expanduser(str(_value(config, "trainer.default_local_dir"))))
        key, contents, what = RUN_FOLDER
    try:
        check(folder, fingerprint, key, contents, what)
    except ValueError as err:
        errors.append(str(err))
    return errors


def claim_run(config, scoring: bool = False) -> dict:
    """Record the run in its folder (the scoring's parts folder), or raise ValueError if another run made it."""
    errors = run_errors(config, scoring)
    if errors:
        raise ValueError("; ".join(errors))
    fingerprint = record(config, scoring)
    if scoring:
        claim(Path(f"{output_path(config)}.parts"), fingerprint, *PARTS)
    else:
        claim(Path(os.path.expanduser(str(_value(config, "trainer.default_local_dir")))), fingerprint, *RUN_FOLDER)
    return fingerprint
