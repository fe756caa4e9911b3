"""CPU tests for dft.eval.prompts: every template inserts the problem exactly once, chat-cot goes through the
tokenizer's chat template and matches the training prompt, the Qwen2.5-Math strings are the verbatim ones, unknown
names list the valid ones, and the CLI prints the exact strings."""

import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from dft import tiny
from dft.eval.prompts import INSTRUCTION, PROMPT_TEMPLATES, build_prompt, get_template, main

REPO = Path(__file__).resolve().parents[1]
# Braces, a backslash command and a newline: nothing in a problem may be read as a format field.
PROBLEM = "Let $f(x) = {x}^2$ and \\boxed{7}; what is {0}?\nMARKER-1729"

# The zero-shot input templates (PROMPT_TEMPLATES[name][0]) of QwenLM/Qwen2.5-Math evaluation/utils.py, rendered
# (``{{}}`` -> ``{}``) with "<P>" for the question, as construct_prompt produces them.
QWEN_EXPECTED = {
    "qwen-boxed": "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<P>\nPlease reason "
    "step by step, and put your final answer within \\boxed{}.<|im_end|>\n<|im_start|>assistant\n",
    "deepseek-math": "User: <P>\nPlease reason step by step, and put your final answer within \\boxed{}.\n\nAssistant:",
}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    """The tiny ChatML tokenizer, trained on a few chats (a second or so)."""
    records = tiny.make_problems(32, seed=0)
    texts = ["".join(f"{m['role']}\n{m['content']}\n" for m in tiny.to_messages(r)) for r in records]
    return tiny.build_tokenizer(texts, tmp_path_factory.mktemp("tok"))


def _render(name, tokenizer):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_prompt(name, PROBLEM, tokenizer)


def test_the_four_templates_exist():
    assert list(PROMPT_TEMPLATES) == ["chat-cot", "qwen-boxed", "llama-base-boxed", "deepseek-math"]


@pytest.mark.parametrize("name", list(PROMPT_TEMPLATES))
def test_every_template_inserts_the_problem_exactly_once(name, tokenizer):
    prompt = _render(name, tokenizer)
    assert prompt.count(PROBLEM) == 1
    assert prompt.count("MARKER-1729") == 1
    assert prompt.count(INSTRUCTION) == 1  # every template asks for a boxed answer, once


@pytest.mark.parametrize("name", sorted(QWEN_EXPECTED))
def test_qwen_math_templates_are_verbatim(name):
    assert build_prompt(name, "<P>") == QWEN_EXPECTED[name]
    assert PROMPT_TEMPLATES[name].verified


def test_plain_templates_strip_spaces_like_construct_prompt():
    """Qwen2.5-Math returns ``full_prompt.strip(" ")``: spaces only, never newlines."""
    assert build_prompt("deepseek-math", "  p  ") == QWEN_EXPECTED["deepseek-math"].replace("<P>", "  p  ")
    assert build_prompt("qwen-boxed", "p").endswith("assistant\n")


def test_chat_cot_uses_the_tokenizers_chat_template(tokenizer):
    prompt = build_prompt("chat-cot", PROBLEM, tokenizer)
    user = PROBLEM + "\n" + INSTRUCTION
    assert prompt == f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    expected = tokenizer.apply_chat_template(
        [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
    )
    assert prompt == expected


def test_chat_cot_user_message_is_the_training_prompt(tokenizer):
    """Fine-tuned models are evaluated on exactly the user turn they were trained on (dft.tiny.to_messages)."""
    assert INSTRUCTION == tiny.INSTRUCTION
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


def test_provisional_template_warns():
    assert not PROMPT_TEMPLATES["llama-base-boxed"].verified
    with pytest.warns(UserWarning, match="provisional"):
        build_prompt("llama-base-boxed", "p")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_prompt("qwen-boxed", "p")  # verified templates are silent


def test_cli_prints_every_template(capsys):
    main([])
    out = capsys.readouterr().out
    for name in PROMPT_TEMPLATES:
        assert f"=== {name}" in out
    assert repr(QWEN_EXPECTED["qwen-boxed"].replace("<P>", "{input}")) in out
    assert "[PROVISIONAL]" in out


def test_cli_one_template_with_a_problem(capsys):
    main(["--template", "deepseek-math", "--problem", "What is 2+2?", "--raw"])
    out = capsys.readouterr().out
    assert out.count("=== ") == 1
    assert QWEN_EXPECTED["deepseek-math"].replace("<P>", "What is 2+2?") + "\n" in out


def test_cli_renders_chat_cot_with_a_tokenizer(tmp_path, tokenizer, capsys):
    tokenizer.save_pretrained(str(tmp_path))
    main(["--template", "chat-cot", "--problem", "Q", "--tokenizer", str(tmp_path)])
    out = capsys.readouterr().out
    assert repr(build_prompt("chat-cot", "Q", tokenizer)) in out


def test_cli_module_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "dft.eval.prompts", "--template", "qwen-boxed", "--problem", "Q"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert repr(build_prompt("qwen-boxed", "Q")) in result.stdout
