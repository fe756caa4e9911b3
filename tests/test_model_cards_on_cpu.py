"""Model-faithful tiny models keep their card's tokenizer, special tokens, configs and context; only shapes shrink."""

import json

import pytest

from dft.models.cards import TINY_SHAPE, load_card
from dft.models.presets import paper_presets

PAPER_CARDS = [p.card for p in paper_presets()]


@pytest.mark.parametrize("name", ["qwen2.5-math-1.5b", "llama-3.1-8b"])
def test_faithful_tiny_keeps_the_card(name, faithful_tiny):
    from transformers import AutoConfig, AutoTokenizer

    card = load_card(name)
    path = faithful_tiny(name)
    config, real = AutoConfig.from_pretrained(path), AutoConfig.from_pretrained(card.path)
    for key in ("vocab_size", "max_position_embeddings", "bos_token_id", "eos_token_id", "tie_word_embeddings",
                "rope_parameters", "model_type"):  # fmt: skip
        assert getattr(config, key) == getattr(real, key), key
    assert config.num_hidden_layers == TINY_SHAPE["num_hidden_layers"] and config.hidden_size == 64
    assert json.loads((path / "generation_config.json").read_text()) == card.generation_config
    ours, theirs = AutoTokenizer.from_pretrained(path), AutoTokenizer.from_pretrained(card.path)
    text = "Find $x$ such that \\boxed{x^2 = 4}.<|im_end|><|eot_id|>"
    assert ours(text).input_ids == theirs(text).input_ids
    assert (ours.eos_token, ours.bos_token, ours.chat_template) == (theirs.eos_token, theirs.bos_token,
                                                                    theirs.chat_template)  # fmt: skip


def test_card_without_tokenizer_builds_and_says_so(faithful_tiny):
    card = load_card("deepseek-math-7b")
    assert not card.has_tokenizer and card.max_position_embeddings == 4096
    assert not (faithful_tiny("deepseek-math-7b") / "tokenizer.json").exists()


def test_every_paper_card_is_there_and_unknown_names_are_refused():
    assert [load_card(n).name for n in PAPER_CARDS] == list(PAPER_CARDS)
    with pytest.raises(FileNotFoundError, match="no model card 'qwen3'.*qwen2.5-math-1.5b"):
        load_card("qwen3")
