"""CPU tests for dft.models.prompts: the paper's prompt per model, byte for byte with the real tokenizers (the CLI
too), ``prompt=auto`` from the model's preset, one BOS in the token ids, chat-cot through the chat template."""

import subprocess
import sys
from pathlib import Path

import pytest

from dft.models import tiny
from dft.models.cards import default_models_dir
from dft.models.generation import encode_prompt
from dft.models.presets import get_preset, paper_presets
from dft.models.prompts import INSTRUCTION, PROMPT_TEMPLATES, build_prompt, get_template, main, resolve_template

PAPER_CARDS = [p.card for p in paper_presets()]

REPO = Path(__file__).resolve().parents[1]
# Braces, a backslash command and a newline: nothing in a problem may be read as a format field.
PROBLEM = "Let $f(x) = {x}^2$ and \\boxed{7}; what is {0}?\nMARKER-1729"

# PROMPT_TEMPLATES[name][0] of yongliang-wu/DFT math_evaluation/utils.py (e153181f7152), rendered (``{{}}`` ->
# ``{}``) with "<P>" for the question, as its construct_prompt produces them; qwen-boxed and deepseek-math are
# also QwenLM/Qwen2.5-Math's.
EXPECTED = {
    "qwen-boxed": "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<P>\nPlease reason "
    "step by step, and put your final answer within \\boxed{}.<|im_end|>\n<|im_start|>assistant\n",
    "llama-base-boxed": "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|end_of_text|>\n"
    "<|start_header_id|>user<|end_header_id|>\n\n<P>\nPlease reason step by step, and put your final answer within "
    "\\boxed{}.<|end_of_text|>\n<|start_header_id|>assistant<|end_header_id|>\n\n",
    "deepseek-math": "User: <P>\nPlease reason step by step, and put your final answer within \\boxed{}.\n\nAssistant:",
}
# The paper's prompt per model (the DFT README, step 3).
PAPER_PROMPT = {"qwen2.5-math-1.5b": "qwen-boxed", "qwen2.5-math-7b": "qwen-boxed", "llama-3.2-3b": "llama-base-boxed",
                "llama-3.1-8b": "llama-base-boxed", "deepseek-math-7b": "deepseek-math"}  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    """The tiny ChatML tokenizer, trained on a few chats (a second or so)."""
    records = tiny.make_problems(32, seed=0)
    texts = ["".join(f"{m['role']}\n{m['content']}\n" for m in tiny.to_messages(r)) for r in records]
    return tiny.build_tokenizer(texts, tmp_path_factory.mktemp("tok"))


def _render(name, tokenizer):
    return build_prompt(name, PROBLEM, tokenizer)


def test_the_four_templates_exist():
    assert list(PROMPT_TEMPLATES) == ["chat-cot", "qwen-boxed", "llama-base-boxed", "deepseek-math"]


@pytest.mark.parametrize("name", list(PROMPT_TEMPLATES))
def test_every_template_inserts_the_problem_exactly_once(name, tokenizer):
    prompt = _render(name, tokenizer)
    assert prompt.count(PROBLEM) == 1
    assert prompt.count("MARKER-1729") == 1
    assert prompt.count(INSTRUCTION) == 1  # every template asks for a boxed answer, once


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_harness_templates_are_verbatim(name):
    assert build_prompt(name, "<P>") == EXPECTED[name]


@pytest.fixture(scope="module")
def real_tokenizer():
    """``real_tokenizer(card)``: the card's real tokenizer, loaded once per module."""
    from functools import cache

    from transformers import AutoTokenizer

    return cache(lambda card: AutoTokenizer.from_pretrained(default_models_dir() / card))


@pytest.mark.parametrize("card", PAPER_CARDS)
def test_each_preset_names_the_paper_prompt_and_the_cli_prints_it_byte_for_byte(card, capsys):
    assert get_preset(card).eval_prompt == PAPER_PROMPT[card]
    problem = "What is $1+1$?\n(Answer {x})"
    main(["--template", PAPER_PROMPT[card], "--problem", problem, "--tokenizer", str(default_models_dir() / card),
          "--raw"])  # fmt: skip
    captured = capsys.readouterr()
    assert captured.out == EXPECTED[PAPER_PROMPT[card]].replace("<P>", problem)
    assert f"=== {PAPER_PROMPT[card]}: prompt" in captured.err
    bos = {"llama-3.2-3b": "BOS <|begin_of_text|> added", "llama-3.1-8b": "BOS <|begin_of_text|> added"}
    assert bos.get(card, "no BOS added" if card != "deepseek-math-7b" else "has no tokenizer") in captured.err


@pytest.mark.parametrize("card", ["llama-3.2-3b", "llama-3.1-8b"])
def test_llama_prompts_carry_exactly_one_bos(card, real_tokenizer):
    tokenizer = real_tokenizer(card)
    bos = tokenizer.bos_token_id
    for text in (build_prompt("llama-base-boxed", "Q"), "<|begin_of_text|>" + build_prompt("llama-base-boxed", "Q")):
        ids = encode_prompt(tokenizer, text)
        assert ids[0] == bos and ids.count(bos) == 1, ids[:4]
    # the special tokens the template spells out are single tokens, not text pieces
    ids = encode_prompt(tokenizer, build_prompt("llama-base-boxed", "Q"))
    assert ids[1:3] == [tokenizer.convert_tokens_to_ids("<|start_header_id|>"), tokenizer.encode("system")[-1]]
    assert ids.count(tokenizer.convert_tokens_to_ids("<|end_of_text|>")) == 2


def test_qwen_prompts_have_no_bos_and_special_tokens_as_ids(real_tokenizer):
    tokenizer = real_tokenizer("qwen2.5-math-1.5b")
    ids = encode_prompt(tokenizer, build_prompt("qwen-boxed", "Q"))
    assert ids[0] == 151644 and ids.count(151645) == 2 and 151643 not in ids  # <|im_start|>, <|im_end|>, no BOS
    assert tokenizer.decode(ids) == build_prompt("qwen-boxed", "Q")


@pytest.mark.parametrize("card", ["qwen2.5-math-7b", "llama-3.1-8b", "deepseek-math-7b"])
def test_auto_resolves_the_family_prompt_for_hub_ids_and_fine_tunes(card, faithful_tiny):
    assert resolve_template("auto", get_preset(card).hub_id) == PAPER_PROMPT[card]
    assert resolve_template("auto", str(faithful_tiny(card))) == PAPER_PROMPT[card]  # a local copy or fine-tune
    assert resolve_template("chat-cot", str(faithful_tiny(card))) == "chat-cot"  # an explicit name wins


def test_auto_without_a_matching_preset_says_what_to_pass(tmp_path):
    with pytest.raises(ValueError, match=r"prompt=auto: no model preset matches .*pass prompt=NAME, one of: chat-cot"):
        resolve_template("auto", str(tmp_path))


def test_plain_templates_strip_spaces_like_construct_prompt():
    """The harness returns ``full_prompt.strip(" ")``: spaces only, never newlines."""
    assert build_prompt("deepseek-math", "  p  ") == EXPECTED["deepseek-math"].replace("<P>", "  p  ")
    assert build_prompt("qwen-boxed", "p").endswith("assistant\n")
    assert build_prompt("llama-base-boxed", "p").endswith("<|end_header_id|>\n\n")


def test_chat_cot_uses_the_tokenizers_chat_template(tokenizer):
    prompt = build_prompt("chat-cot", PROBLEM, tokenizer)
    user = PROBLEM + "\n" + INSTRUCTION
    assert prompt == f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    expected = tokenizer.apply_chat_template(
        [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
    )
    assert prompt == expected


def test_chat_cot_user_message_is_the_training_prompt(tokenizer):
    """Fine-tuned models are evaluated on exactly the user turn they were trained on (dft.models.tiny.to_messages)."""
    record = tiny.make_problems(1, seed=3)[0]
    training_user_turn = tiny.to_messages(record)[:1]
    expected = tokenizer.apply_chat_template(training_user_turn, tokenize=False, add_generation_prompt=True)
    assert build_prompt("chat-cot", record["problem"], tokenizer) == expected


def test_chat_cot_without_a_tokenizer_is_an_error():
    with pytest.raises(ValueError, match="pass a tokenizer"):
        build_prompt("chat-cot", "p")


def test_unknown_template_lists_the_valid_names():
    with pytest.raises(ValueError) as err:
        build_prompt("qwen25-math-cot", "p")
    message = str(err.value)
    assert "qwen25-math-cot" in message
    assert all(name in message for name in PROMPT_TEMPLATES)
    with pytest.raises(ValueError, match="valid: chat-cot"):
        get_template("")


def test_cli_prints_every_template(capsys):
    main([])
    out = capsys.readouterr().out
    for name in PROMPT_TEMPLATES:
        assert f"=== {name}" in out
    assert repr(EXPECTED["qwen-boxed"].replace("<P>", "{input}")) in out


def test_cli_one_template_with_a_problem(capsys):
    main(["--template", "deepseek-math", "--problem", "What is 2+2?", "--raw"])
    captured = capsys.readouterr()
    assert captured.err.count("=== ") == 1  # the header goes to stderr, the bare text to stdout
    assert captured.out == EXPECTED["deepseek-math"].replace("<P>", "What is 2+2?")


def test_cli_renders_chat_cot_with_a_tokenizer(tmp_path, tokenizer, capsys):
    tokenizer.save_pretrained(str(tmp_path))
    main(["--template", "chat-cot", "--problem", "Q", "--tokenizer", str(tmp_path)])
    out = capsys.readouterr().out
    assert repr(build_prompt("chat-cot", "Q", tokenizer)) in out


def test_cli_module_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "dft", "prompts", "--template", "qwen-boxed", "--problem", "Q"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert repr(build_prompt("qwen-boxed", "Q")) in result.stdout
