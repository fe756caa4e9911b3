"""Critique fine-tuning data (WebInstruct-CFT) as SFT conversations: ``python -m dft data cft --out DIR [...]``.

Hub ``TIGER-Lab/WebInstruct-CFT`` (config ``WebInstruct-CFT-50K`` by default, the CFT paper's main set;
``--hub-config WebInstruct-CFT-600K`` or ``-4K`` for the others; the config names are the dataset's folder names,
not checked against the hub here) or a local jsonl/parquet with its fields ``instruction``, ``input`` (the question
and a candidate solution) and ``output`` (the critique). The user turn is ``instruction + "\\n" + input`` (how
LLaMA-Factory, which the CFT authors trained with, joins an alpaca-style prompt and query); the assistant turn is
the critique. There is no gold answer to verify, so ``gold`` is the empty string and no CoT instruction is added.
"""

from __future__ import annotations

from functools import partial

from dft.data.prep import DatasetSpec, Example, HubSource, main_for
from dft.data.problems import text_field


def convert(row: dict, extra: dict) -> Example:
    """One CFT row as a chat: instruction + question/candidate solution -> critique; no gold answer."""
    instruction = text_field(row, "instruction")
    question = text_field(row, "input")
    critique = text_field(row, "output")
    return Example(instruction + "\n" + question, critique, "", "webinstruct_cft")


SPEC = DatasetSpec(
    name="cft",
    description="WebInstruct-CFT (TIGER-Lab/WebInstruct-CFT): instruction + question and solution -> critique",
    hub=HubSource("TIGER-Lab/WebInstruct-CFT", "WebInstruct-CFT-50K", "train"),
    convert=convert,
)

main = partial(main_for, SPEC)  # the CLI: main(argv) prepares the data and returns the report


if __name__ == "__main__":
    main()
