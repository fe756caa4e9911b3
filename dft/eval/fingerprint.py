"""What produced an output folder, so results of different runs are never mixed.

``<out>/fingerprint.json`` records the model (path and a digest of its weights), the prompt template (name and a
digest of its text), the sampling parameters, the stop set, the context, the backend and dtype, and a digest of
each benchmark's problems. A run writes it before generating; a run into a folder whose fingerprint differs
(or that holds responses and no fingerprint) is refused with what differs. Changing ``sampling.n`` or ``limit``
is not a difference: more samples or problems extend the same run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from dft.core.io import write_json_atomic

FILE = "fingerprint.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin")
FULL_HASH_BYTES = 64 << 20  # files up to this size are hashed whole
SAMPLE_BLOCKS, BLOCK_BYTES = 64, 1 << 20  # larger ones: 64 evenly spaced 1 MiB blocks, plus name and size


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def default_output_dir(model: str) -> Path:
    """``runs/eval/<last two parts of the path>-<8 hex of the full resolved path>``: unique per model."""
    local = Path(model)
    full = str(local.resolve()) if local.exists() else model
    return Path("runs/eval") / f"{'_'.join(local.parts[-2:])}-{_sha256(full.encode())[:8]}"


def local_model_dir(model: str) -> Path:
    """The folder holding ``model``'s files: itself, or a hub id's snapshot in the Hugging Face cache."""
    if Path(model).is_dir():
        return Path(model)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(model))


def weights_digest(model_dir: Path) -> str:
    """sha256 over the weight files' names, sizes and contents (whole up to 64 MiB, else 64 sampled MiB)."""
    files = sorted(p for p in Path(model_dir).iterdir() if p.name.endswith(WEIGHT_SUFFIXES))
    if not files:
        raise FileNotFoundError(f"{model_dir}: no weight files ({', '.join('*' + s for s in WEIGHT_SUFFIXES)})")
    return files_digest(files)


def files_digest(files) -> str:
    """sha256 over each file's name, size and contents (whole up to 64 MiB, else 64 evenly spaced MiB)."""
    digest = hashlib.sha256()
    for path in map(Path, files):
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}\n".encode())
        with open(path, "rb") as f:
            if size <= FULL_HASH_BYTES:
                digest.update(f.read())
                continue
            for k in range(SAMPLE_BLOCKS):
                f.seek(k * (size - BLOCK_BYTES) // (SAMPLE_BLOCKS - 1))
                digest.update(f.read(BLOCK_BYTES))
    return digest.hexdigest()


def problems_digest(problems) -> str:
    """sha256 of every problem's id, text and gold, in order: the benchmark as it was evaluated."""
    rows = [[p.id, p.problem, p.gold] for p in problems]
    return _sha256(json.dumps(rows, ensure_ascii=False).encode())


def text_digest(text: str) -> str:
    return _sha256(text.encode())


def differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every differing leaf (benchmarks only where both folders have them)."""
    out = []
    for key in sorted(set(old) | set(new)):
        if prefix == "benchmarks." and (key not in old or key not in new):
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {json.dumps(a)[:120]} in the folder, {json.dumps(b)[:120]} now")
    return out


def check(out_dir: Path, fingerprint: dict, key: str = "out=", contents: str = "*.jsonl",
          what: str = "responses") -> dict | None:  # fmt: skip
    """The fingerprint recorded in ``out_dir`` (None: none yet), after checking it against ``fingerprint``.

    Raises ValueError naming the folder and every difference; a folder holding ``contents`` (responses, a run's
    checkpoints) but no fingerprint is refused too (its origin is unknown). ``key`` names the folder's option in
    the message (``out=``, ``--out``, ``trainer.default_local_dir=``). Writes nothing."""
    out_dir = Path(out_dir)
    path = out_dir / FILE
    if not path.is_file():
        stray = sorted(p.name for p in out_dir.glob(contents)) if out_dir.is_dir() else []
        if stray:
            raise ValueError(f"{out_dir} holds {what} ({', '.join(stray[:5])}) but no {FILE}: their origin is unknown; "
                             f"use a new {key} folder or remove them")  # fmt: skip
        return None
    try:
        recorded = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg}); restore it or use a new {key} folder") from None
    differing = differences(recorded, fingerprint)
    if differing:
        raise ValueError(
            f"{out_dir} holds results of a different run ({FILE}), so resuming would mix them: "
            + "; ".join(differing) + f". Use a new {key} folder, or remove this one to start over."
        )  # fmt: skip
    return recorded


def claim(out_dir: Path, fingerprint: dict, key: str = "out=", contents: str = "*.jsonl",
          what: str = "responses") -> None:  # fmt: skip
    """Write ``fingerprint`` to ``out_dir``, or check it against the one there (:func:`check`; new benchmarks are
    added)."""
    recorded = check(out_dir, fingerprint, key, contents, what)
    path = Path(out_dir) / FILE
    if recorded is None:
        write_json_atomic(path, fingerprint)
        return
    if "benchmarks" not in fingerprint:  # a record without benchmarks (a training run's command) is checked only
        return
    merged = {**recorded, "benchmarks": {**recorded.get("benchmarks", {}), **fingerprint["benchmarks"]}}
    if merged != recorded:
        write_json_atomic(path, merged)


def make_fingerprint(model: str, model_dir: Path, prompt: str, prompt_sample: str, params, limits: dict,
                     backend: str, dtype: str, benchmarks: dict[str, str]) -> dict:  # fmt: skip
    """The fingerprint of a run: ``prompt_sample`` is one rendered prompt (so a changed chat template shows),
    ``limits`` is ``ModelFormat.describe()``, ``benchmarks`` maps each benchmark to its problems' digest."""
    local = Path(model)
    sampling = {k: getattr(params, k) for k in ("temperature", "top_p", "max_new_tokens", "seed")}
    return {
        "model": str(local.resolve()) if local.exists() else model,
        "weights_sha256": weights_digest(model_dir),
        "prompt": prompt,
        "prompt_sha256": text_digest(prompt_sample),
        "sampling": sampling,
        "stops": limits["stops"],
        "context": limits["context"],
        "backend": backend,
        "dtype": dtype,
        "benchmarks": benchmarks,
    }
