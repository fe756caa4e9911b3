"""Presets are the one place for a model's hub id, paper name, card and evaluation prompt."""

import pytest

from dft.models.cards import card_names
from dft.models.presets import get_preset, paper_presets, preset_for_model, presets


def test_every_paper_card_has_a_preset_with_a_known_prompt():
    from dft.models.prompts import PROMPT_TEMPLATES

    by_card = {p.card: p for p in presets().values() if p.card}
    assert sorted(by_card) == card_names() and len(card_names()) == 5  # the five cards of ../shared/models
    assert sorted(p.name for p in paper_presets()) == sorted(p.name for p in by_card.values())
    assert all(p.eval_prompt in PROMPT_TEMPLATES for p in presets().values())
    assert get_preset("llama-3.1-8b").lr == 2e-5 and get_preset("llama-3.1-8b").paper_name == "LLaMA-3.1-8B"


@pytest.mark.parametrize("card, prompt", [("qwen2.5-math-1.5b", "qwen-boxed"), ("llama-3.2-3b", "llama-base-boxed"),
                                          ("deepseek-math-7b", "deepseek-math")])  # fmt: skip
def test_a_local_copy_or_fine_tune_finds_its_family_preset(card, prompt, faithful_tiny):
    assert preset_for_model(str(faithful_tiny(card))).eval_prompt == prompt
    assert preset_for_model(get_preset(card).hub_id).card == card


def test_unknown_models_and_presets(tmp_path):
    assert preset_for_model(str(tmp_path)) is None
    with pytest.raises(ValueError, match="unknown preset 'qwen3'; valid: .*qwen2.5-math-1.5b"):
        get_preset("qwen3")


def test_the_cli_prints_what_the_recipes_read_and_refuses_an_unknown_preset(capsys):
    from dft.models.presets import main

    main(["llama-3.2-3b", "--field", "hub_id", "--field", "paper_name"])
    assert capsys.readouterr().out == "meta-llama/Llama-3.2-3B\nLLaMA-3.2-3B\n"
    main(["tiny-cpu", "--field", "hub_id"])  # built by code: no hub id, an empty line for the shell
    assert capsys.readouterr().out == "\n"
    with pytest.raises(SystemExit) as exit_info:
        main(["llama-9b", "--field", "hub_id"])
    assert exit_info.value.code == 2 and "unknown preset 'llama-9b'; valid: " in capsys.readouterr().err
