r"""Prompt templates for evaluation: every exact prompt string lives in this module.

The DFT paper evaluates with the Qwen2.5-Math harness as forked in its repository (yongliang-wu/DFT
``math_evaluation``; README step 3): ``qwen-boxed`` for Qwen2.5-Math, ``llama-base-boxed`` for the LLaMA models,
``deepseek-math`` for DeepSeekMath. Each model preset names its template (``paper.eval_prompt`` in
``configs/preset/*.yaml``); ``prompt=auto`` (the default of ``dft eval``) takes it from the preset of the model's
family, so a fine-tuned checkpoint is evaluated with its base model's prompt.

- ``qwen-boxed``, ``llama-base-boxed``, ``deepseek-math``: ``PROMPT_TEMPLATES[name][0]`` of the DFT fork's
  ``math_evaluation/utils.py`` (commit ``DFT_COMMIT``), copied verbatim and rendered as its ``construct_prompt``
  renders a zero-shot prompt: ``template.format(input=question).strip(" ")``. ``qwen-boxed`` and
  ``deepseek-math`` are also byte-identical in upstream QwenLM/Qwen2.5-Math ``evaluation/utils.py``.
- ``chat-cot`` (ours, not the paper's): the model's own chat template applied to one user message,
  ``problem + "\n" + INSTRUCTION``, with the generation prompt appended. It is the user turn of the SFT/DFT
  training data (``dft.models.tiny.to_messages``); the tiny CPU model and the quickstart use it.

API: ``PROMPT_TEMPLATES``, ``build_prompt(template, problem, tokenizer=None)``, ``resolve_template(name, model)``.
CLI: ``python -m dft prompts [--template NAME] [--problem TEXT] [--tokenizer PATH] [--raw]`` prints the
exact prompts (``repr`` by default; ``--raw`` writes the bare text to stdout and the header to stderr).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from dft.core.args import DefaultsHelpFormatter
from dft.models.upstream import DFT_COMMIT

INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
COT_SUFFIX = "\n" + INSTRUCTION  # what the chat-cot user turn adds to the problem
DFT_UTILS = f"yongliang-wu/DFT@{DFT_COMMIT[:12]} math_evaluation/utils.py PROMPT_TEMPLATES"
AUTO = "auto"


@dataclass(frozen=True)
class PromptTemplate:
    """One template. ``text`` is a ``str.format`` string with one ``{input}`` slot (literal braces doubled).

    ``chat``: ``text`` is the user message, wrapped by the tokenizer's chat template; otherwise ``text`` is the
    whole prompt (special tokens spelled out as text; the tokenizer turns them into their ids).
    """

    name: str
    text: str
    chat: bool
    source: str


PROMPT_TEMPLATES: dict[str, PromptTemplate] = {
    t.name: t
    for t in [
        PromptTemplate(
            "chat-cot",
            "{input}" + COT_SUFFIX.replace("{", "{{").replace("}", "}}"),
            chat=True,
            source="ours: the model's chat template, one user turn = problem + newline + instruction; identical "
            "to the user turn of the chat-format training data (chat_cot_user)",
        ),
        PromptTemplate(
            "qwen-boxed",
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\n{input}\n"  # upstream has this line and the next as one literal (too long here)
            "Please reason step by step, and put your final answer within \\boxed{{}}.<|im_end|>\n"
            "<|im_start|>assistant\n",
            chat=False,
            source=f'{DFT_UTILS}["qwen-boxed"][0], verbatim (the same in QwenLM/Qwen2.5-Math)',
        ),
        PromptTemplate(
            "llama-base-boxed",
            "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|end_of_text|>\n"
            "<|start_header_id|>user<|end_header_id|>\n\n{input}\n"  # one literal upstream, split here
            "Please reason step by step, and put your final answer within \\boxed{{}}.<|end_of_text|>\n"
            "<|start_header_id|>assistant<|end_header_id|>\n\n",
            chat=False,
            source=f'{DFT_UTILS}["llama-base-boxed"][0], verbatim (only in the DFT fork)',
        ),
        PromptTemplate(
            "deepseek-math",
            "User: {input}\nPlease reason step by step, and put your final answer within \\boxed{{}}.\n\nAssistant:",
            chat=False,
            source=f'{DFT_UTILS}["deepseek-math"][0], verbatim (the same in QwenLM/Qwen2.5-Math)',
        ),
    ]
}


def get_template(name: str) -> PromptTemplate:
    """The template called ``name``; an unknown name is an error that lists the valid ones."""
    try:
        return PROMPT_TEMPLATES[name]
    except KeyError:
        raise ValueError(f"unknown prompt template {name!r}; valid: {', '.join(PROMPT_TEMPLATES)}") from None


def resolve_template(name: str, model: str) -> str:
    """``name``, or for ``auto`` the ``paper.eval_prompt`` of the preset of ``model``'s family (a hub id of a
    preset, or a local folder whose config has a preset card's architecture and vocabulary, fine-tunes included)."""
    if name != AUTO:
        return get_template(name).name
    from dft.models.presets import preset_for_model

    preset = preset_for_model(model)
    if preset is None:
        raise ValueError(
            f"prompt=auto: no model preset matches {model!r} (neither a preset's hub id nor a local model of a "
            f"preset card's family); pass prompt=NAME, one of: {', '.join(PROMPT_TEMPLATES)}"
        )
    return get_template(preset.eval_prompt).name


def chat_cot_user(problem: str) -> str:
    """The one user message of the ``chat-cot`` prompt: problem + newline + the CoT instruction. It is also the user
    turn of every chat-format training row (data preps, DPO pairs, RL prompts, the tiny model's data)."""
    return problem + COT_SUFFIX


def problem_of_chat_cot(user: str) -> str | None:
    """The problem inside a ``chat-cot`` user message (:func:`chat_cot_user` undone); None for any other message."""
    problem = user[: -len(COT_SUFFIX)] if user.endswith(COT_SUFFIX) else ""
    return problem if problem.strip() else None


def build_prompt(template: str, problem: str, tokenizer=None) -> str:
    """The exact prompt string for ``problem`` under ``template``.

    Chat templates need ``tokenizer`` and use ``tokenizer.apply_chat_template(..., add_generation_prompt=True)``;
    the others are plain format strings and ignore it. The string carries no BOS unless the template writes one:
    ``dft.models.generation.ModelFormat.encode`` adds the model's BOS once, for either backend.
    """
    spec = get_template(template)
    if not spec.chat:
        return spec.text.format(input=problem).strip(" ")  # what the harness's construct_prompt returns
    if tokenizer is None:
        raise ValueError(f"prompt template {template!r} applies the model's chat template: pass a tokenizer")
    messages = [{"role": "user", "content": spec.text.format(input=problem)}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _load_tokenizer(path: str | None, needed: bool):
    """The tokenizer at ``path``; None when there is none and no template shown needs one (DeepSeekMath's card)."""
    if path is None:
        return None
    if Path(path).is_dir() and not (Path(path) / "tokenizer_config.json").is_file() and not needed:
        print(f"note: {path} has no tokenizer; plain templates are shown without token counts", file=sys.stderr)
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _describe(spec: PromptTemplate, text: str, tokenizer, as_message: bool) -> str:
    """The header line: template, what is shown, source, and (with a tokenizer) the token count and BOS."""
    kind = "user message (no chat template to show it in)" if as_message else "prompt"
    header = f"=== {spec.name}: {kind}; source: {spec.source}"
    if tokenizer is not None and not as_message:
        from dft.models.generation import encode_prompt

        ids = encode_prompt(tokenizer, text)
        added = len(ids) - len(tokenizer(text, add_special_tokens=False).input_ids)
        header += f"; {len(ids)} tokens" + (f", BOS {tokenizer.bos_token} added" if added else ", no BOS added")
    return header


def main(argv: list[str] | None = None) -> None:
    """CLI: print the exact prompt of one template, or of all of them, for a problem (default ``{input}``)."""
    parser = argparse.ArgumentParser(
        description="Print the exact evaluation prompt strings.", formatter_class=DefaultsHelpFormatter
    )
    parser.add_argument("--template", choices=list(PROMPT_TEMPLATES), help="one template (default: all)")
    parser.add_argument("--problem", default="{input}", help="problem text to insert (default: '{input}')")
    parser.add_argument("--tokenizer", help="tokenizer path, hub id or model card folder (e.g. ../shared/models/X)")
    parser.add_argument("--raw", action="store_true", help="write the bare text (header to stderr) instead of repr")
    args = parser.parse_args(argv)
    specs = [get_template(args.template)] if args.template else list(PROMPT_TEMPLATES.values())
    tokenizer = _load_tokenizer(args.tokenizer, needed=args.template == "chat-cot")
    for spec in specs:
        as_message = spec.chat and (tokenizer is None or not tokenizer.chat_template)
        text = spec.text.format(input=args.problem) if as_message else build_prompt(spec.name, args.problem, tokenizer)
        header = _describe(spec, text, tokenizer, as_message)
        if args.raw:
            print(header, file=sys.stderr)
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            print(header)
            print(repr(text))


if __name__ == "__main__":
    main()
