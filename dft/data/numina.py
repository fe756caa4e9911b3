r"""NuminaMath-CoT (about 860k problems) as SFT conversations: ``python -m dft data numina --out DIR [...]``.

Hub ``AI-MO/NuminaMath-CoT`` (split ``train``) or a local jsonl/parquet with the same fields, ``problem`` and
``solution``. The assistant turn is the solution; the gold is its last ``\boxed{}``, and a solution without one is
a bad row (``--on-bad-row skip`` to drop and count such rows). The ``source`` column is ``numina_cot/<origin>``
when the row names its origin (``cn_k12``, ``olympiads``, ...).

The DFT paper trains on 100,000 examples: ``--n 100000 --seed 0 --selection random`` takes a seeded random subset
(the paper's wording), ``--selection first`` the first 100,000 rows that pass validation. Both are reproducible.

``--format official`` writes the rows as the official code's ``numina_cot.py --train_end 100000`` kept them: the
problem and solution exactly as read, rows without a ``\boxed{}`` kept (``gold`` empty), so
``--format official --n 100000 --selection first`` is exactly input rows 0..99,999 (``setting=paper``'s data).
Training renders them in the official format (``dft.data.training_format``).
"""

from __future__ import annotations

from functools import partial

from dft.data.prep import DatasetSpec, Example, HubSource, main_for
from dft.data.problems import gold_field, last_boxed, raw_text_field, text_field
from dft.models.prompts import chat_cot_user


def convert(row: dict, extra: dict) -> Example:
    """One NuminaMath-CoT row as a chat: chat-cot user message, the CoT solution, gold = its last boxed answer."""
    problem = text_field(row, "problem")
    solution = text_field(row, "solution")
    return Example(chat_cot_user(problem), solution, gold_field(row, "solution", "boxed"), _source(row))


def convert_official(row: dict) -> Example:
    """One row as the official prep keeps it: bare problem, solution as read, gold = last boxed or empty."""
    problem, solution = raw_text_field(row, "problem"), raw_text_field(row, "solution")
    return Example(problem, solution, (last_boxed(solution) or "").strip(), _source(row))


def _source(row: dict) -> str:
    origin = row.get("source")
    return f"numina_cot/{origin}" if isinstance(origin, str) and origin else "numina_cot"


SPEC = DatasetSpec(
    name="numina",
    description="NuminaMath-CoT (AI-MO/NuminaMath-CoT): problem -> CoT solution; gold = last \\boxed{}",
    hub=HubSource("AI-MO/NuminaMath-CoT", None, "train"),
    convert=convert,
    official=convert_official,
)

main = partial(main_for, SPEC)  # the CLI: main(argv) prepares the data and returns the report


if __name__ == "__main__":
    main()
