"""Atomic file writes: a reader (a trainer, a resumed job) never sees a half-written file."""

import json
import os
import tempfile
from pathlib import Path
from typing import Callable


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp)`` on a temp file next to ``path``, then ``os.replace`` it into place.

    A failed write leaves the old file (if any) untouched and no temp file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are meant to be read by others
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def parquet_schema(path: str | os.PathLike) -> tuple[list[str], str | None]:
    """(a parquet file's columns, None), or ([], why it is unusable: not a parquet file, or no rows)."""
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_metadata(path)
    except Exception as err:  # noqa: BLE001  (pyarrow raises several kinds for a file that is not parquet)
        return [], f"is not a parquet file ({type(err).__name__}); prepare it with python -m dft data <name>"
    if metadata.num_rows == 0:
        return [], "has no rows; prepare it again, or give a file with rows"
    return list(metadata.schema.to_arrow_schema().names), None
