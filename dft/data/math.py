r"""MATH train set (7,500 problems) as SFT conversations: ``python -m dft data math --out DIR [...]``.

Hub ``DigitalLearningGmbH/MATH-lighteval`` (split ``train``) or a local jsonl/parquet with the same fields,
``problem`` and ``solution``. The assistant turn is the solution as written; the gold is its last ``\boxed{}``
(the rule the MATH benchmarks are graded by), and a solution without one is a bad row.
"""

from __future__ import annotations

from functools import partial

from dft.data.prep import DatasetSpec, Example, HubSource, main_for
from dft.data.problems import gold_field, text_field
from dft.models.prompts import chat_cot_user


def convert(row: dict, extra: dict) -> Example:
    """One MATH row as a chat: chat-cot user message, the worked solution, gold = its last boxed answer."""
    problem = text_field(row, "problem")
    solution = text_field(row, "solution")
    return Example(chat_cot_user(problem), solution, gold_field(row, "solution", "boxed"), "math")


SPEC = DatasetSpec(
    name="math",
    description="MATH train (DigitalLearningGmbH/MATH-lighteval): problem -> solution; gold = last \\boxed{}",
    hub=HubSource("DigitalLearningGmbH/MATH-lighteval", None, "train"),
    convert=convert,
)

main = partial(main_for, SPEC)  # the CLI: main(argv) prepares the data and returns the report


if __name__ == "__main__":
    main()
