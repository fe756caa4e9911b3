"""Per-response JSONL files that survive a kill at any point.

Each line is one graded sample, keyed by ``(id, sample)``. Rows are appended a chunk at a time and fsync'ed,
so a killed run loses at most the chunk in flight. On reopening, a torn last line (a kill in the middle of a
write) is cut off, so the file again ends on a complete row; duplicated keys are an error rather than
silently double-counted.
"""

import json
import os
from pathlib import Path

from dft.data.problems import read_jsonl


def _cut_torn_tail(path: Path) -> None:
    """Truncate the file after its last newline; a torn final line cannot be trusted."""
    with open(path, "rb+") as f:
        data = f.read()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            f.truncate(end)


def load_rows(path: Path) -> dict[tuple[str, int], dict]:
    """The complete rows of a response file as ``{(id, sample): row}``; a missing file is empty."""
    path = Path(path)
    if not path.exists():
        return {}
    _cut_torn_tail(path)
    rows = read_jsonl(path).strict(ValueError)
    by_key = {}
    for index, row in enumerate(rows.rows):
        key = (row["id"], row["sample"])
        if key in by_key:
            raise ValueError(f"{rows.label(index)}: duplicate row for problem {key[0]!r} sample {key[1]}")
        by_key[key] = row
    return by_key


def append_rows(path: Path, rows: list[dict]) -> None:
    """Append rows as one write, then flush and fsync, so a finished chunk is on disk before the next."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    with open(path, "a") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
