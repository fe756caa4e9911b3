r"""The toy scale's source files, in the real datasets' layouts, made by code from the tiny word problems.

``python -m dft tiny --out DIR`` writes them beside the tiny model (``dft.models.tiny``), from its training
problems (the first half pretrains the tiny Base, the second half is what the recipes fine-tune on) and its
held-out problems:

- ``sources/numina.jsonl``: NuminaMath-CoT's fields (``source``, ``problem``, ``solution``, ``messages``), read by
  ``python -m dft data numina --source local --input`` as the hub rows are;
- ``sources/cft.jsonl``: WebInstruct-CFT's fields (``instruction``, ``input``, ``output``): each problem with a
  candidate solution, right or wrong, and its critique (``python -m dft data cft --source local --input``);
- ``data/pretrain.parquet``: the Base's pretraining chats (``messages``, ``id``, ``gold``);
- ``benchmarks/tiny_math/test.jsonl``: the held-out problems as a benchmark (``benchmarks=[tiny_math]
  data_dir=DIR/benchmarks``).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from dft.core.io import atomic_write

CFT_INSTRUCTION = "Please critique whether the following solution to the question is correct."


def pretrain_split(train_records: list[dict]) -> tuple[list[dict], list[dict]]:
    """(pretraining problems, fine-tuning problems): the two halves of the training problems, disjoint."""
    half = len(train_records) // 2
    return train_records[:half], train_records[half:]


def numina_row(record: dict) -> dict:
    """A problem as a NuminaMath-CoT row: its origin, the problem, the boxed solution and the chat of both."""
    messages = [{"role": "user", "content": record["problem"]}, {"role": "assistant", "content": record["solution"]}]
    return {"source": "tiny_math", "problem": record["problem"], "solution": record["solution"], "messages": messages}


def cft_row(record: dict, rng: random.Random) -> dict:
    """A problem with a candidate solution (half of them off by one) and its critique, in WebInstruct-CFT's fields."""
    gold = int(record["gold"])
    wrong = rng.random() < 0.5
    shown = gold + 1 if wrong else gold
    candidate = record["solution"].replace(f"\\boxed{{{gold}}}", f"\\boxed{{{shown}}}")
    verdict = f"The solution is wrong: the answer is {gold}, not {shown}." if wrong else "The solution is correct."
    return {
        "instruction": CFT_INSTRUCTION,
        "input": f"Question:\n{record['problem']}\n\nSolution:\n{candidate}",
        "output": f"{verdict}\nConclusion: right answer \\boxed{{{gold}}}",
    }


def _write_jsonl(rows: list[dict], path: Path) -> None:
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_sources(root: Path, train_records: list[dict], test_records: list[dict], seed: int) -> None:
    """The files above under ``root`` (the pretraining parquet is written by the caller, which owns its format)."""
    _, finetune = pretrain_split(train_records)
    _write_jsonl([numina_row(r) for r in finetune], root / "sources" / "numina.jsonl")
    rng = random.Random(seed)
    _write_jsonl([cft_row(r, rng) for r in finetune], root / "sources" / "cft.jsonl")
    benchmark = [{"id": r["id"], "problem": r["problem"], "gold": r["gold"]} for r in test_records]
    _write_jsonl(benchmark, root / "benchmarks" / "tiny_math" / "test.jsonl")
