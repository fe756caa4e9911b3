r"""GSM8K train set (7,473 problems) as SFT conversations: ``python -m dft data gsm8k --out DIR [...]``.

Hub ``openai/gsm8k`` (config ``main``, split ``train``) or a local jsonl with the same fields, ``question`` and
``answer``; the answer is a worked solution ending in a ``#### <number>`` line. The assistant turn is that
solution with the ``####`` line replaced by a final sentence, ``The final answer is \boxed{72}.``, so the model
learns to end the way the evaluation grades (last ``\boxed{}``). The gold is the number with thousands separators
removed (``2,125`` -> ``2125``), by the parser the GSM8K benchmark loader uses (``dft.data.problems.gsm8k_gold``).

The ``<<48/2=24>>`` calculator annotations are stripped by default (``48/2 = <<48/2=24>>24`` -> ``48/2 = 24``):
they are markup for a calculator tool that neither training nor evaluation runs, and the chat-cot evaluation
prompt asks for plain step-by-step reasoning, so keeping them would teach the model to emit that markup.
``--keep-annotations`` keeps the solution text as published.
"""

from __future__ import annotations

import argparse
import re
from functools import partial

from dft.data.prep import DatasetSpec, Example, HubSource, main_for
from dft.data.problems import gold_field, gsm8k_parts, text_field
from dft.models.prompts import chat_cot_user

ANNOTATION = re.compile(r"<<[^<>]*>>")


def convert(row: dict, extra: dict) -> Example:
    r"""One GSM8K row as a chat: chat-cot user message, solution ending in ``\boxed{gold}``, gold number."""
    question = text_field(row, "question")
    gold = gold_field(row, "answer", "gsm8k")  # the GSM8K benchmark's own gold parser
    body = gsm8k_parts(row["answer"])[0]
    if not extra.get("keep_annotations"):
        body = ANNOTATION.sub("", body)
    solution = "\n".join(part for part in (body, f"The final answer is \\boxed{{{gold}}}.") if part)
    return Example(chat_cot_user(question), solution, gold, "gsm8k")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """GSM8K's own option."""
    parser.add_argument(
        "--keep-annotations", action="store_true", help="keep the <<a*b=c>> calculator annotations (default: strip)"
    )


SPEC = DatasetSpec(
    name="gsm8k",
    description="GSM8K train (openai/gsm8k main): question -> worked solution ending in \\boxed{answer}",
    hub=HubSource("openai/gsm8k", "main", "train"),
    convert=convert,
    add_arguments=add_arguments,
)

main = partial(main_for, SPEC)  # the CLI: main(argv) prepares the data and returns the report


if __name__ == "__main__":
    main()
