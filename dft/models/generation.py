r"""What a model's format decides around generation: prompt token ids (one BOS), the stop set, the context.

One ``ModelFormat`` per evaluated model, read from its folder (or hub id) before any weights load:

- ``encode(prompt)``: the prompt's token ids with exactly one BOS where the tokenizer adds one (Llama-3,
  DeepSeek), none where it adds none (Qwen2.5), and never a second one when the text already starts with it.
  Both backends get these ids, so HF and vLLM see the same tokens.
- ``stops``: generation ends at the first of (a) the token ids of the tokenizer's eos, the end-of-turn token of
  its chat template (Qwen2.5-Math: ``<|im_end|>``, which its eos ``<|endoftext|>`` is not), every eos id of
  ``generation_config.json``, and every stop string of the paper's harness that is one token in this vocabulary;
  (b) the harness's stop strings in the text (yongliang-wu/DFT ``math_evaluation/math_eval.py``: ``</s>``,
  ``<|im_end|>``, ``<|endoftext|>``, ``<|eot_id|>``, ``<|end_of_text|>``, ``<｜end▁of▁sentence｜>``). The saved
  text stops before them. The harness itself adds stop ids by model-path substring (``qwen2``: 151645 and
  151643; ``deepseek``: 100001) and relies on vLLM matching the strings in detokenised text, where special
  tokens never appear; deriving the ids from the tokenizer stops on the same tokens without either caveat.
- ``context``: ``max_position_embeddings`` (the harness leaves vLLM's ``max_model_len`` at the model's own); a
  prompt gets ``min(max_new_tokens, context - prompt tokens)`` new tokens; a prompt with no room is an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dft.models.upstream import DFT_COMMIT

HARNESS_STOP_STRINGS = ("</s>", "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "<｜end▁of▁sentence｜>")
HARNESS_SOURCE = f"yongliang-wu/DFT@{DFT_COMMIT[:12]} math_evaluation/math_eval.py stop_words"
_PROBE = "\u2063dft-end-of-turn-probe\u2063"


@dataclass(frozen=True)
class StopSet:
    """Stop token ids (with their token strings) and stop strings of one model."""

    token_ids: tuple[int, ...]
    tokens: tuple[str, ...]
    strings: tuple[str, ...]

    def cut(self, text: str) -> tuple[str, str | None]:
        """``text`` before its first stop string, and that string (None if there is none)."""
        found = [(text.find(s), s) for s in self.strings if s in text]
        if not found:
            return text, None
        position, stop = min(found)
        return text[:position], stop

    def token_name(self, token_id: int) -> str:
        return self.tokens[self.token_ids.index(token_id)]

    def as_dict(self) -> dict:
        return {"token_ids": list(self.token_ids), "tokens": list(self.tokens), "strings": list(self.strings)}


@dataclass(frozen=True)
class EncodedPrompt:
    """A problem's prompt as token ids, and how many new tokens it may have (``budget``)."""

    problem: object
    ids: tuple[int, ...]
    budget: int


def adds_bos(tokenizer) -> bool:
    """Whether the tokenizer puts its BOS in front of a text by default (Llama-3 yes, Qwen2.5 no)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    return tokenizer("a")["input_ids"][:1] == [bos] != tokenizer("a", add_special_tokens=False)["input_ids"][:1]


def encode_prompt(tokenizer, text: str) -> list[int]:
    """``text``'s token ids with exactly one BOS where the tokenizer adds one, none where it adds none."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if adds_bos(tokenizer) and ids[:1] != [tokenizer.bos_token_id]:
        ids.insert(0, tokenizer.bos_token_id)
    return ids


def end_of_turn(tokenizer) -> str | None:
    """The special token the chat template writes right after an assistant message (None without a template)."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    messages = [{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": _PROBE}]
    try:
        rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    except Exception:  # a template that refuses this conversation has no end of turn we can read
        return None
    after = rendered.split(_PROBE, 1)[1] if _PROBE in rendered else ""
    ids = tokenizer(after, add_special_tokens=False)["input_ids"]
    return tokenizer.convert_ids_to_tokens(ids[0]) if ids and ids[0] in tokenizer.added_tokens_decoder else None


def _as_ids(value) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]


def generation_config_eos(model_path: str) -> list[int]:
    """The eos id(s) of the model's ``generation_config.json`` (none when it has no such file)."""
    from transformers import GenerationConfig

    try:
        return _as_ids(GenerationConfig.from_pretrained(model_path).eos_token_id)
    except OSError:
        return []


def build_stop_set(tokenizer, model_path: str) -> StopSet:
    """The model's stop set (see the module docstring), ids in a stable order."""
    ids = _as_ids(tokenizer.eos_token_id) + generation_config_eos(model_path)
    turn_end = end_of_turn(tokenizer)
    special = {t.content: i for i, t in tokenizer.added_tokens_decoder.items()}
    for text in ([turn_end] if turn_end else []) + list(HARNESS_STOP_STRINGS):
        if text in special:  # a special token of this vocabulary (ordinary text is matched as text)
            ids.append(special[text])
    unique = tuple(dict.fromkeys(ids))
    strings = tuple(dict.fromkeys(HARNESS_STOP_STRINGS + ((turn_end,) if turn_end else ())))
    return StopSet(unique, tuple(tokenizer.convert_ids_to_tokens(list(unique))), strings)


def context_length(model_path: str) -> int:
    """``max_position_embeddings`` of the model's config."""
    local = Path(model_path) / "config.json"
    if local.is_file():
        config = json.loads(local.read_text())
    else:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(model_path).to_dict()
    if "max_position_embeddings" not in config:
        raise ValueError(f"{model_path}: its config has no max_position_embeddings; the context is unknown")
    return int(config["max_position_embeddings"])


@dataclass
class ModelFormat:
    """A model's tokenizer, stop set and context; see the module docstring."""

    tokenizer: object
    stops: StopSet
    context: int

    @classmethod
    def load(cls, model_path: str) -> ModelFormat:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_path)
        return cls(tokenizer, build_stop_set(tokenizer, model_path), context_length(model_path))

    def encode(self, text: str) -> list[int]:
        return encode_prompt(self.tokenizer, text)

    def encode_all(self, problems, prompt_of, max_new_tokens: int, where: str) -> list[EncodedPrompt]:
        """Every problem's prompt ids and budget; a prompt with no room left in the context is an error naming
        ``where`` (the benchmark or input file) and the problem."""
        encoded = []
        for problem in problems:
            ids = self.encode(prompt_of(problem))
            budget = min(max_new_tokens, self.context - len(ids))
            if budget < 1:
                raise ValueError(
                    f"{where}: problem {problem.id!r}: the prompt has {len(ids)} tokens and the model's context is "
                    f"{self.context} (max_position_embeddings): no room for a new token"
                )
            encoded.append(EncodedPrompt(problem, tuple(ids), budget))
        return encoded

    def describe(self) -> dict:
        """What summary.json and the fingerprint record about generation limits."""
        return {"stops": self.stops.as_dict(), "context": self.context, "stop_strings_source": HARNESS_SOURCE}
