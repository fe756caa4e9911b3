"""DPO preference pairs from verified samples, and atomic parquet writes.

A pair is (chosen = a correct response, rejected = an incorrect response) to the same prompt. Responses whose
grading failed are in neither set. Policy for a problem with ``c`` correct and ``w`` incorrect samples: all
``c * w`` combinations (``per_problem=null``, the default), or at most ``per_problem`` of them drawn without
replacement with a generator seeded by ``(seed, problem id)``, so the choice does not depend on the order or
number of other problems. Problems with no correct or no incorrect sample give no pair.

The parquet follows the conversational preference layout (as TRL's DPO trainer reads it): ``prompt`` (the user
turn as a message list, the same prompt as SFT and evaluation), ``chosen`` and ``rejected`` (one assistant
message each), plus ``id``, ``gold``, ``chosen_sample`` and ``rejected_sample``.
"""

import hashlib
import random
from itertools import product
from pathlib import Path

import pandas as pd

from dft.core.io import atomic_write
from dft.models.prompts import chat_cot_user


def _problem_rng(seed: int, problem_id: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}:{problem_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


def pair_indices(correct: list[int], wrong: list[int], per_problem: int | None, rng: random.Random):
    """(chosen, rejected) sample indices: every combination, or ``per_problem`` of them at random."""
    combos = list(product(correct, wrong))
    if per_problem is None or per_problem >= len(combos):
        return combos
    return sorted(rng.sample(combos, per_problem))


def build_pairs(problems, rows: dict, n: int, per_problem: int | None = None, seed: int = 0) -> list[dict]:
    """Preference pairs for every problem, in problem order."""
    pairs = []
    for p in problems:
        graded = [(i, rows[(p.id, i)]) for i in range(n) if not rows[(p.id, i)]["error"]]
        correct = [i for i, r in graded if r["correct"]]
        wrong = [i for i, r in graded if not r["correct"]]
        prompt = [{"role": "user", "content": chat_cot_user(p.problem)}]
        for c, w in pair_indices(correct, wrong, per_problem, _problem_rng(seed, p.id)):
            pairs.append({
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": rows[(p.id, c)]["response"]}],
                "rejected": [{"role": "assistant", "content": rows[(p.id, w)]["response"]}],
                "id": p.id, "gold": p.gold, "chosen_sample": c, "rejected_sample": w,
            })  # fmt: skip
    return pairs


def write_parquet_atomic(frame: pd.DataFrame, path: Path) -> None:
    """Write a parquet so that a reader never sees half of it."""
    atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
