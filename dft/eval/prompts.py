r"""Prompt templates for evaluation: every exact prompt string lives in this module.

- ``chat-cot`` (default, the DFT paper's protocol): the model's own chat template applied to one user message,
  ``problem + "\n" + INSTRUCTION``, with the generation prompt appended. It is the same user message the SFT/DFT
  training data uses (``dft.tiny.to_messages``), so fine-tuned models are evaluated on the format they learned.
- ``qwen-boxed``, ``deepseek-math``: the zero-shot input templates of the Qwen2.5-Math evaluation harness
  (QwenLM/Qwen2.5-Math, ``evaluation/utils.py``, ``PROMPT_TEMPLATES[name][0]``), copied verbatim, rendered the
  way its ``construct_prompt`` renders them: ``template.format(input=problem).strip(" ")``.
- ``llama-base-boxed``: named by the DFT README for LLaMA base models, but defined only in DFT's own fork of that
  harness (``math_evaluation/utils.py``), which could not be read here; upstream Qwen2.5-Math has no such
  template. The string below is a PROVISIONAL stand-in, not the original, and using it warns. Replace it with
  the verbatim string from yongliang-wu/DFT ``math_evaluation/utils.py`` before comparing numbers with the paper.

API: ``PROMPT_TEMPLATES`` (name -> :class:`PromptTemplate`) and ``build_prompt(template, problem, tokenizer=None)``.
CLI: ``python -m dft.eval.prompts [--template NAME] [--problem TEXT] [--tokenizer PATH] [--raw]`` prints the
exact prompts (``repr`` by default, so whitespace and newlines are unambiguous).
"""

from __future__ import annotations

import argparse
import warnings
from dataclasses import dataclass

INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
QWEN_COMMIT = "615096eceb14e653ba791d862a21b326a1d26e12"  # the version read (forks of it carry the same strings)
QWEN_UTILS = f"QwenLM/Qwen2.5-Math@{QWEN_COMMIT[:12]} evaluation/utils.py PROMPT_TEMPLATES"


@dataclass(frozen=True)
class PromptTemplate:
    """One template. ``text`` is a ``str.format`` string with one ``{input}`` slot (literal braces doubled).

    ``chat``: ``text`` is the user message, wrapped by the tokenizer's chat template; otherwise ``text`` is the
    whole prompt. ``verified``: the string was checked verbatim against ``source``.
    """

    name: str
    text: str
    chat: bool
    source: str
    verified: bool = True


PROMPT_TEMPLATES: dict[str, PromptTemplate] = {
    t.name: t
    for t in [
        PromptTemplate(
            "chat-cot",
            "{input}\nPlease reason step by step, and put your final answer within \\boxed{{}}.",
            chat=True,
            source="DFT paper (arXiv 2508.05629): the model's chat template, one user turn = problem + newline + "
            "instruction; identical to the training prompt in dft.tiny.to_messages",
        ),
        PromptTemplate(
            "qwen-boxed",
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\n{input}\n"  # upstream has this line and the next as one literal (too long here)
            "Please reason step by step, and put your final answer within \\boxed{{}}.<|im_end|>\n"
            "<|im_start|>assistant\n",
            chat=False,
            source=f'{QWEN_UTILS}["qwen-boxed"][0], verbatim',
        ),
        PromptTemplate(
            "llama-base-boxed",
            # PROVISIONAL (not the original; see the module docstring): a plain Question/Answer frame around the
            # same boxed-answer instruction, with no chat special tokens, as a base model has none.
            "Question: {input}\nPlease reason step by step, and put your final answer within \\boxed{{}}.\nAnswer:",
            chat=False,
            source="PROVISIONAL stand-in: the original is in yongliang-wu/DFT math_evaluation/utils.py (not found)",
            verified=False,
        ),
        PromptTemplate(
            "deepseek-math",
            "User: {input}\nPlease reason step by step, and put your final answer within \\boxed{{}}.\n\nAssistant:",
            chat=False,
            source=f'{QWEN_UTILS}["deepseek-math"][0], verbatim',
        ),
    ]
}


def get_template(name: str) -> PromptTemplate:
    """The template called ``name``; an unknown name is an error that lists the valid ones."""
    try:
        return PROMPT_TEMPLATES[name]
    except KeyError:
        raise ValueError(f"unknown prompt template {name!r}; valid: {', '.join(PROMPT_TEMPLATES)}") from None


def build_prompt(template: str, problem: str, tokenizer=None) -> str:
    """The exact prompt string for ``problem`` under ``template``.

    Chat templates need ``tokenizer`` and use ``tokenizer.apply_chat_template(..., add_generation_prompt=True)``;
    the others are plain format strings and ignore it. Special tokens a plain template spells out (``<|im_start|>``)
    are text here; a backend must tokenize the prompt without adding them again (BOS aside).
    """
    spec = get_template(template)
    if not spec.verified:
        warnings.warn(f"prompt template {template!r} is provisional, not the original: {spec.source}", stacklevel=2)
    if not spec.chat:
        return spec.text.format(input=problem).strip(" ")  # what Qwen2.5-Math's construct_prompt returns
    if tokenizer is None:
        raise ValueError(f"prompt template {template!r} applies the model's chat template: pass a tokenizer")
    messages = [{"role": "user", "content": spec.text.format(input=problem)}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _render_for_cli(spec: PromptTemplate, problem: str, tokenizer) -> tuple[str, str]:
    """(what is shown, what it is) for one template: the full prompt, or the user message when no tokenizer."""
    if spec.chat and tokenizer is None:
        return spec.text.format(input=problem), "user message (pass --tokenizer to see it in a chat template)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the CLI says so in the header instead
        return build_prompt(spec.name, problem, tokenizer), "prompt"


def main(argv: list[str] | None = None) -> None:
    """CLI: print the exact prompt of one template, or of all of them, for a problem (default ``{input}``)."""
    parser = argparse.ArgumentParser(description="Print the exact evaluation prompt strings.")
    parser.add_argument("--template", choices=list(PROMPT_TEMPLATES), help="one template (default: all)")
    parser.add_argument("--problem", default="{input}", help="problem text to insert (default: '{input}')")
    parser.add_argument("--tokenizer", help="tokenizer path or hub id, to render chat templates in full")
    parser.add_argument("--raw", action="store_true", help="print the text as is instead of its repr")
    args = parser.parse_args(argv)
    tokenizer = None
    if args.tokenizer:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    names = [args.template] if args.template else list(PROMPT_TEMPLATES)
    for name in names:
        spec = PROMPT_TEMPLATES[name]
        text, kind = _render_for_cli(spec, args.problem, tokenizer)
        status = "" if spec.verified else " [PROVISIONAL]"
        print(f"=== {name}{status}: {kind}; source: {spec.source}")
        print(text if args.raw else repr(text))


if __name__ == "__main__":
    main()
