"""``loss.full_weight_tokens`` resolved to token ids with the model's tokenizer, before any model loads.

``loss.full_weight_tokens`` takes token ids, token strings of the vocabulary (``"<|im_end|>"``), and two names:
``eos`` (the tokenizer's eos token) and ``end_of_turn`` (the special token the chat template writes right after
an assistant message, ``dft.models.generation.end_of_turn``). Strings are resolved with the model's tokenizer
before any model loads; a string that is not one token of the vocabulary is an error naming it.
"""

from omegaconf import DictConfig, open_dict

# the names loss.full_weight_tokens accepts besides ids and vocabulary tokens
TOKEN_NAMES = ("eos", "end_of_turn")


def token_id(tokenizer, token, where: str = "loss.full_weight_tokens") -> int:
    """One entry of ``loss.full_weight_tokens`` as a token id of ``tokenizer``."""
    from dft.models.generation import end_of_turn

    if isinstance(token, int) or (isinstance(token, str) and token.isdigit()):
        token_id = int(token)
        if not 0 <= token_id < len(tokenizer):
            raise ValueError(f"{where}: token id {token_id} is outside the vocabulary of {len(tokenizer)} tokens")
        return token_id
    name = token
    if token == "eos":
        token = tokenizer.eos_token
    elif token == "end_of_turn":
        token = end_of_turn(tokenizer)
    vocab = tokenizer.get_vocab()
    if token is None or token not in vocab:
        known = f"; special tokens: {tokenizer.all_special_tokens[:12]}" if token is not None else ""
        what = f"{name!r} (the tokenizer has none)" if token is None else f"{name!r} is not one token of the vocabulary"
        raise ValueError(f"{where}: {what}{known}; give token ids, vocabulary tokens, or one of {list(TOKEN_NAMES)}")
    return vocab[token]


def resolve_full_weight_tokens(config: DictConfig) -> list[int]:
    """Replace the strings of ``loss.full_weight_tokens`` by token ids of ``model.path``'s tokenizer, in place."""
    tokens = (config.get("loss") or {}).get("full_weight_tokens") or []
    tokens = [tokens] if isinstance(tokens, (int, str)) else list(tokens)
    if all(isinstance(t, int) for t in tokens):
        return tokens
    from verl.utils import hf_tokenizer

    from dft.models.checkpoints import resolve_model

    tokenizer = hf_tokenizer(
        resolve_model(config.model.path), trust_remote_code=bool(config.model.get("trust_remote_code"))
    )
    ids = sorted({token_id(tokenizer, t) for t in tokens})
    with open_dict(config):
        config.loss.full_weight_tokens = ids
    print(f"[dft] loss.full_weight_tokens={tokens} -> ids {ids}")
    return ids
