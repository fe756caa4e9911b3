r"""Prompts for the online RL baselines (PPO, GRPO) as verl's RL parquet: ``python -m dft data rl --out DIR [...]``.

Each written row is what verl 0.9.1's ``RLHFDataset`` (``verl/utils/dataset/rl_dataset.py``) reads and what its
reward workers hand to :func:`dft.rl.reward.compute_score`:

- ``data_source``: the input row's ``source`` (``numina_cot/cn_k12`` in a prepared NuminaMath parquet), else ``math``;
  verl reports validation rewards per data source.
- ``prompt``: one user turn, exactly the user message of the evaluation's ``chat-cot`` prompt (problem + newline +
  CoT instruction, :func:`dft.data.prep.chat_cot_user`). verl renders it with the model's chat template and the
  generation prompt, as :func:`dft.models.prompts.build_prompt` does, so the policy is trained on the prompt it is
  evaluated on.
- ``ability``: ``math``; ``reward_model``: ``{"style": "rule", "ground_truth": gold}``;
- ``extra_info``: ``{"split", "index" (position in the split), "id" (``rl-<input row>``), "source_id" (the input
  row's ``id``, if any), "problem"}``.

Input: the problems that rejection sampling (:mod:`dft.rl.rft`) samples, read by the same rule
(``dft.data.problems.problem_of_row``): a prepared SFT parquet (``messages`` and ``gold``; the problem is the user turn
read back in the format the file records, and a chat user turn that is not a chat-cot message is a bad row) or a
jsonl/parquet of ``problem`` and ``gold`` or ``answer``; rows with ``problem`` and ``solution`` but no answer
take the solution's last ``\boxed{}`` (raw NuminaMath-CoT, the hub default, or MATH).
The paper's RL runs use the RFT problems: ``--input data/numina/train.parquet --n 10000 --selection first``
takes the first 10,000 problems, ``--val-size`` draws validation prompts from the rows after them, and
``dft data rft input=<out>/train.parquet`` samples the same problems (recipes/table3 chooses them once).

Everything else is :mod:`dft.data.prep`'s: reading, selection, splits, ``--on-bad-row error|skip`` (the error names
the file, the line or row, and the field), atomic writes and ``report.json``. Two checks differ from the SFT preps:
``--max-length`` (with ``--tokenizer``) bounds the prompt as verl's ``data.max_prompt_length`` counts it (chat
template with generation prompt), and every gold answer must verify against itself under the reward's grader, since a
gold math-verify cannot parse would give its prompt reward 0 on every rollout (``--no-gold-check`` skips this).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, replace

from dft.data import numina
from dft.data.prep import DatasetSpec, PrepOptions, main_for
from dft.data.prep import prepare as prepare_dataset
from dft.data.problems import BadRow, file_format_of, problem_of_row
from dft.data.select import Validator
from dft.models.prompts import chat_cot_user

DEFAULT_SOURCE = "math"
GOLD_CHECK_WORKERS = min(8, os.cpu_count() or 1)


@dataclass(frozen=True)
class RLPrompt:
    """One RL prompt: the problem (its user turn is the chat-cot message), the gold answer and where it came from."""

    problem: str
    gold: str
    source: str
    source_id: str = ""
    id: str = ""
    tokens: int | None = None  # prompt tokens in the chat template with the generation prompt, when measured
    fields: tuple[str, str] = ("problem", "answer")  # the input fields the problem and the gold came from

    def messages(self) -> list[dict]:
        """The ``prompt`` column: the chat-cot user turn."""
        return [{"role": "user", "content": chat_cot_user(self.problem)}]

    def record(self, split: str, index: int) -> dict:
        """The parquet row verl's RLHFDataset reads."""
        extra = {"split": split, "index": index, "id": self.id, "source_id": self.source_id, "problem": self.problem}
        return {
            "data_source": self.source,
            "prompt": self.messages(),
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": self.gold},
            "extra_info": extra,
        }


# ---------------------------------------------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------------------------------------------


def convert(row: dict, extra: dict, fmt: str = "chat") -> RLPrompt:
    """One input row (problem with gold, answer or solution, or a prepared SFT row in data format ``fmt``) as an
    RL prompt, read by ``dft.data.problems.problem_of_row``: the rule rejection sampling reads problems by."""
    problem, gold, fields = problem_of_row(row, fmt)
    source, source_id = row.get("source"), row.get("id")
    return RLPrompt(
        problem=problem,
        gold=gold,
        source=source if isinstance(source, str) and source else DEFAULT_SOURCE,
        source_id="" if source_id is None else str(source_id),
        fields=fields,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The RL prep's own option."""
    parser.add_argument(
        "--no-gold-check", dest="gold_check", action="store_false", help="do not check that golds verify"
    )


# ---------------------------------------------------------------------------------------------------------------
# Validation: prompt length as verl counts it, golds the reward can verify
# ---------------------------------------------------------------------------------------------------------------


def prompt_length(tokenizer, messages: list[dict]) -> int:
    """Prompt tokens exactly as verl's ``RLHFDataset`` filter counts them (``filter_overlong_prompts``)."""
    from verl.utils.tokenizer import normalize_token_ids

    return len(normalize_token_ids(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)))


class RLValidator(Validator):
    """:class:`Validator` for prompts: lengths of the prompt alone, and golds checked by the reward's grader."""

    def __init__(self, spec: DatasetSpec, inputs, opts: PrepOptions, tokenizer=None):
        super().__init__(spec, inputs, opts, tokenizer)
        self.grader = None
        self.input_format = file_format_of(opts.input) if opts.source == "local" else "chat"

    def convert(self, row) -> RLPrompt:
        return convert(row, self.opts.extra, self.input_format)

    def __enter__(self):
        if self.opts.extra.get("gold_check", True):
            from dft.eval.grading import Grader

            self.grader = Grader(workers=GOLD_CHECK_WORKERS)
        return self

    def __exit__(self, *exc) -> None:
        if self.grader is not None:
            self.grader.close()

    def check(self, indices) -> list[RLPrompt | BadRow]:
        results = [self._convert(i) for i in indices]
        good = [k for k, r in enumerate(results) if isinstance(r, RLPrompt)]
        if self.tokenizer is not None:
            for k in good:
                results[k] = self._measure(results[k])
        if self.grader is not None:
            self._check_golds(results, [k for k in good if isinstance(results[k], RLPrompt)])
        return results

    def _measure(self, prompt: RLPrompt) -> RLPrompt | BadRow:
        length = prompt_length(self.tokenizer, prompt.messages())
        if self.opts.max_length is not None and length > self.opts.max_length:
            reason = f"is {length} tokens with the chat template, more than --max-length {self.opts.max_length}"
            return BadRow(prompt.fields[0], reason, "prompt longer than max_length")
        return replace(prompt, tokens=length)

    def _check_golds(self, results: list, good: list[int]) -> None:
        r"""A gold must be judged equal to itself (as the reward would judge ``\boxed{gold}``); else a BadRow."""
        outcomes = self.grader.judge_many([(results[k].gold, results[k].gold) for k in good])
        for k, (correct, error) in zip(good, outcomes):
            if not correct:
                reason = f"{results[k].gold[:80]!r} does not verify against itself ({error or 'not equal'})"
                results[k] = BadRow(results[k].fields[1], reason, "gold answer does not verify")


# ---------------------------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------------------------


def write_parquet(prompts: list[RLPrompt], split: str, path: str) -> None:
    """verl's RL parquet: data_source, prompt, ability, reward_model, extra_info (explicit types, even when empty)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    reward = pa.struct([("style", pa.string()), ("ground_truth", pa.string())])
    extra = pa.struct(
        [("split", pa.string()), ("index", pa.int64()), ("id", pa.string()), ("source_id", pa.string()),
         ("problem", pa.string())]
    )  # fmt: skip
    schema = pa.schema(
        [("data_source", pa.string()), ("prompt", pa.list_(message)), ("ability", pa.string()),
         ("reward_model", reward), ("extra_info", extra)]
    )  # fmt: skip
    rows = [p.record(split, i) for i, p in enumerate(prompts)]
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


SPEC = DatasetSpec(
    name="rl",
    description="prompts and gold answers for verl's PPO/GRPO (RL parquet); --max-length counts prompt tokens",
    hub=numina.SPEC.hub,  # the RL problems are the training set's
    convert=convert,
    add_arguments=add_arguments,
    validator=RLValidator,
    write=write_parquet,
)


def prepare(opts: PrepOptions) -> dict:
    """Read, validate, select and write the RL prompts as ``opts`` says; return the report (also in report.json)."""
    return prepare_dataset(SPEC, opts)


def main(argv: list[str] | None = None) -> dict:
    """CLI entry point: prepare and print a one-line summary; a data problem exits with status 2."""
    return main_for(SPEC, argv)


if __name__ == "__main__":
    main()
