r"""The two training-data formats, in one place: how a (problem, solution) row becomes prompt and target tokens.

- ``chat`` (ours, the default; ``setting=corrected``): the parquet's user turn is the evaluation's ``chat-cot``
  user message, ``problem + "\n" + INSTRUCTION``, and verl's ``MultiTurnSFTDataset`` renders the conversation
  with the model's chat template; the loss covers the assistant turn up to the template's end of turn
  (``<|im_end|>\n`` for Qwen).
- ``official`` (``setting=paper``): what the official DFT code trains on (yongliang-wu/DFT,
  ``verl/utils/dataset/sft_dataset.py`` with the README's ``prompt_dict_keys=['question']``): the user turn is
  the bare problem, rendered by the model's chat template *with the generation prompt* (for Qwen2.5-Math the
  template adds its default system prompt, "Please reason step by step, and put your final answer within
  \boxed{}."); the target is the solution followed by ``tokenizer.eos_token`` (``<|endoftext|>`` for
  Qwen2.5-Math). Prompt and target are tokenized separately, without special tokens, and concatenated; the
  loss covers exactly the target tokens, the end token included.

Base models without a chat template (Llama-3.1-8B and Llama-3.2-3B base ship none): the prompt is the model's
*evaluation prompt* (its preset's ``paper.eval_prompt``, the exact strings of ``dft.models.prompts``) with the
bare problem in ``{input}``, so training and evaluation see the same prompt; ``data.prompt_template`` names
another one. There is no silent fallback to a library default: a tokenizer with neither raises. A tokenizer
that adds a BOS token by default (Llama) gets exactly one BOS in front of the prompt, as evaluation does.

A prepared parquet records its format in its schema metadata (``dft.format``); the trainer refuses a file
whose format differs from ``data.format``.
"""

from __future__ import annotations

from dft.models.prompts import build_prompt, chat_cot_user, get_template

FORMATS = ("chat", "official")
METADATA_KEY = b"dft.format"


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"data format {fmt!r} is not one of {list(FORMATS)}")
    return fmt


def user_turn(problem: str, fmt: str) -> str:
    """The user message a prepared parquet stores for ``problem``: chat-cot's in ``chat``, the bare problem in
    ``official``."""
    return chat_cot_user(problem) if check_format(fmt) == "chat" else problem


def file_format(path) -> str | None:
    """The format a prepared parquet records in its schema metadata (None for files made elsewhere)."""
    import pyarrow.parquet as pq

    value = (pq.read_schema(path).metadata or {}).get(METADATA_KEY)
    return value.decode() if value else None


def with_format(table, fmt: str):
    """A pyarrow table whose schema metadata records ``fmt``."""
    return table.replace_schema_metadata({**(table.schema.metadata or {}), METADATA_KEY: check_format(fmt).encode()})


# ---------------------------------------------------------------------------------------------------------------
# The official format
# ---------------------------------------------------------------------------------------------------------------


def official_template(tokenizer, configured: str | None = None) -> str | None:
    """Which prompt the official format uses: None for the tokenizer's chat template, else the name of a plain
    evaluation template (``configured``, or the model preset's ``paper.eval_prompt`` when there is no chat
    template)."""
    if configured is None and getattr(tokenizer, "chat_template", None):
        return None
    name = configured
    if name is None:
        from dft.models.presets import preset_for_model

        preset = preset_for_model(str(getattr(tokenizer, "name_or_path", "")))
        if preset is None:
            raise ValueError(
                f"the tokenizer of {tokenizer.name_or_path!r} has no chat template and no model preset names its "
                "evaluation prompt: set data.prompt_template to a template of dft.models.prompts"
            )
        name = preset.eval_prompt
    if get_template(name).chat:
        raise ValueError(f"prompt template {name!r} needs the model's chat template, which this tokenizer lacks")
    return name


def official_prompt(tokenizer, problem: str, template: str | None) -> str:
    """The prompt text: the chat template with the generation prompt, or the plain evaluation template."""
    if template is None:
        messages = [{"role": "user", "content": problem}]
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return build_prompt(template, problem)


def adds_bos(tokenizer) -> bool:
    """Whether the tokenizer puts a BOS token in front of plain text by default (Llama-3 does, Qwen does not)."""
    bos = tokenizer.bos_token_id
    plain = tokenizer("a", add_special_tokens=False).input_ids
    return bos is not None and tokenizer("a").input_ids[:1] == [bos] and plain[:1] != [bos]


def _token_ids(tokenizer, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"] if texts else []


def official_prompt_ids(tokenizer, problems: list[str], template: str | None) -> list[list[int]]:
    """The prompt tokens of each problem: tokenized without special tokens (as the official dataset does), one
    BOS in front where the tokenizer adds one by default."""
    prompt_ids = _token_ids(tokenizer, [official_prompt(tokenizer, problem, template) for problem in problems])
    if adds_bos(tokenizer):
        bos = tokenizer.bos_token_id
        prompt_ids = [ids if ids[:1] == [bos] else [bos, *ids] for ids in prompt_ids]
    return prompt_ids


def encode_official(tokenizer, rows: list[tuple[str, str]], template: str | None) -> list[tuple[list, list]]:
    """``(prompt_ids, target_ids)`` of each (problem, solution) row: the prompt, and ``solution + eos`` tokenized
    on its own without special tokens."""
    if tokenizer.eos_token is None:
        raise ValueError(f"the tokenizer of {tokenizer.name_or_path!r} has no eos token to end the target with")
    prompt_ids = official_prompt_ids(tokenizer, [problem for problem, _ in rows], template)
    target_ids = _token_ids(tokenizer, [solution + tokenizer.eos_token for _, solution in rows])
    return list(zip(prompt_ids, target_ids))


def problem_and_solution(messages: list[dict], where: str) -> tuple[str, str]:
    """The (user, assistant) contents of a one-turn conversation; anything else is an error naming the row."""
    roles = [m.get("role") for m in messages]
    if roles != ["user", "assistant"]:
        raise ValueError(f"{where}: the official format needs one user and one assistant message, got {roles}")
    return messages[0]["content"], messages[1]["content"]


# ---------------------------------------------------------------------------------------------------------------
# Where the trained tokens start (the no-loss-token guard)
# ---------------------------------------------------------------------------------------------------------------


def _before_first_assistant(tokenizer, messages: list[dict]) -> str | None:
    """The chat template's text before the first assistant turn's content (None without one)."""
    first = next((i for i, m in enumerate(messages) if m.get("role") == "assistant"), None)
    if first is None:
        return None
    return tokenizer.apply_chat_template(messages[:first], add_generation_prompt=True, tokenize=False)


def prompt_lengths(tokenizer, conversations: list[list[dict]], fmt: str, template: str | None = None) -> list:
    """For each conversation, the index of its first trained token (None when it has no assistant turn)."""
    if check_format(fmt) == "official":
        rows = [problem_and_solution(messages, f"row {i}") for i, messages in enumerate(conversations)]
        return [len(ids) for ids in official_prompt_ids(tokenizer, [problem for problem, _ in rows], template)]
    texts = [_before_first_assistant(tokenizer, messages) for messages in conversations]
    counts = iter(map(len, _token_ids(tokenizer, [text for text in texts if text is not None])))
    return [None if text is None else next(counts) for text in texts]


# a token covers at least one UTF-8 byte of its text; this many more for BOS and prefix spaces
SPARE_TOKENS = 8


def rows_without_loss_tokens(tokenizer, conversations: list[list[dict]], fmt: str, max_length: int,
                             template: str | None = None) -> list[int]:  # fmt: skip
    """The rows whose first trained token lies at or beyond ``max_length`` (or that have none). Exact, and fast on
    large files: a one-turn row whose prompt has fewer UTF-8 bytes than ``max_length`` (less the template's own,
    and ``SPARE_TOKENS``) cannot have as many tokens, so only the others are rendered and tokenized."""
    empty = [{"role": "user", "content": ""}]
    frame = official_prompt(tokenizer, "", template) if fmt == "official" else _before_first_assistant(
        tokenizer, [*empty, {"role": "assistant", "content": ""}])  # fmt: skip
    budget = max_length - len(frame.encode()) - SPARE_TOKENS

    def may_be_long(messages) -> bool:
        roles = [m.get("role") for m in messages]
        return roles[:2] != ["user", "assistant"] or len(str(messages[0]["content"]).encode()) >= budget

    if fmt == "official":  # a malformed row is named by its own index, before any is skipped
        for i, messages in enumerate(conversations):
            problem_and_solution(messages, f"row {i}")
    candidates = [i for i, messages in enumerate(conversations) if may_be_long(messages)]
    lengths = prompt_lengths(tokenizer, [conversations[i] for i in candidates], fmt, template)
    return [i for i, n in zip(candidates, lengths) if n is None or n >= max_length]
