"""The official data format with the real tokenizers of ../shared/models, through model-faithful tiny models: the
loss covers exactly the solution and its end token, the prompt is the one the official code (or, without a chat
template, the model's evaluation prompt) renders, and nothing falls back silently to a library default."""

import warnings

import pytest
import torch
from transformers import AutoTokenizer

from dft.data.prep import Example, write_parquet
from dft.data.training_format import official_template, prompt_lengths, rows_without_loss_tokens
from dft.models.prompts import build_prompt
from dft.train.sft_datasets import OfficialFormatDataset

PROBLEM = "Let $x^2 = 4$ and $x > 0$. Find $x$."
SOLUTION = "Since $x > 0$, $x = \\sqrt{4} = 2$. The answer is $\\boxed{2}$."
# the Qwen2.5-Math chat template with the generation prompt, its default system prompt included (RENDERS.txt)
QWEN_PROMPT = ("<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
               f"<|im_start|>user\n{PROBLEM}<|im_end|>\n<|im_start|>assistant\n")  # fmt: skip
# card -> (end token id, the prompt text the first trained token follows)
CARDS = {
    "qwen2.5-math-1.5b": (151643, QWEN_PROMPT),
    "qwen2.5-math-7b": (151643, QWEN_PROMPT),
    "llama-3.2-3b": (128001, None),  # no chat template: the llama-base-boxed evaluation prompt
    "llama-3.1-8b": (128001, None),
}


def official_dataset(model_dir, tmp_path, rows, max_length=512):
    path = tmp_path / "train.parquet"
    write_parquet([Example(problem, solution, "", "t", f"t-{i}") for i, (problem, solution) in enumerate(rows)],
                  str(path), "official")  # fmt: skip
    config = {"max_length": max_length, "truncation": "right", "pad_mode": "no_padding"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the provisional llama-base-boxed string warns until issue 9 lands
        return OfficialFormatDataset(str(path), AutoTokenizer.from_pretrained(model_dir), config)


@pytest.mark.parametrize("card", sorted(CARDS))
def test_official_loss_mask_is_exactly_the_solution_and_its_end_token(card, faithful_tiny, tmp_path):
    model_dir = faithful_tiny(card)
    end_id, expected_prompt = CARDS[card]
    dataset = official_dataset(model_dir, tmp_path, [(PROBLEM, SOLUTION)])
    tokenizer = dataset.tokenizer
    row = dataset[0]
    ids, mask = row["input_ids"].tolist(), row["loss_mask"].bool()
    first = int(mask.nonzero()[0])
    assert mask[first:].all() and not mask[:first].any()  # one contiguous span, at the end
    trained = row["input_ids"][mask].tolist()
    assert trained == tokenizer(SOLUTION + tokenizer.eos_token, add_special_tokens=False).input_ids
    assert trained[-1] == end_id == tokenizer.eos_token_id
    if expected_prompt is None:
        assert official_template(tokenizer) == "llama-base-boxed" and tokenizer.chat_template is None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected_prompt = build_prompt("llama-base-boxed", PROBLEM)
        # exactly one BOS, as evaluation tokenizes the prompt
        assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
        ids = ids[1:]
        first -= 1
    assert tokenizer.decode(ids[:first]) == expected_prompt
    assert ids[:first] == tokenizer(expected_prompt, add_special_tokens=False).input_ids


@pytest.mark.parametrize("card", ["qwen2.5-math-1.5b", "llama-3.2-3b"])
def test_official_rows_are_cut_on_the_right_and_rows_without_loss_tokens_are_counted(card, faithful_tiny, tmp_path):
    long_problem = "Think. " * 80 + PROBLEM
    rows = [(PROBLEM, SOLUTION * 20), (long_problem, SOLUTION), (PROBLEM, SOLUTION)]
    dataset = official_dataset(faithful_tiny(card), tmp_path, rows, max_length=96)
    cut = dataset[0]
    assert len(cut["input_ids"]) == 96 and cut["loss_mask"][-1] == 1
    assert dataset[1]["loss_mask"].sum() == 0
    lengths = prompt_lengths(dataset.tokenizer, dataset.messages, "official", dataset.template)
    assert lengths[1] >= 96 > max(lengths[0], lengths[2])
    assert rows_without_loss_tokens(dataset.tokenizer, dataset.messages, "official", 96, dataset.template) == [1]
    assert [int(torch.argmax(dataset[i]["loss_mask"])) for i in (0, 2)] == [lengths[0], lengths[2]]


def test_a_tokenizer_without_chat_template_and_without_preset_is_refused(tiny, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny.model_dir)
    tokenizer.chat_template = None
    tokenizer.name_or_path = str(tmp_path)  # no config.json: no preset matches
    with pytest.raises(ValueError, match="has no chat template and no model preset names its evaluation prompt"):
        official_template(tokenizer)
    assert official_template(tokenizer, "deepseek-math") == "deepseek-math"
    with pytest.raises(ValueError, match="'chat-cot' needs the model's chat template"):
        official_template(tokenizer, "chat-cot")


@pytest.mark.parametrize("card", ["qwen2.5-math-1.5b", "llama-3.1-8b"])
@pytest.mark.parametrize("fmt", ["chat", "official"])
def test_the_fast_count_of_rows_without_loss_tokens_is_exact(card, fmt):
    from dft.models.cards import load_card

    tokenizer = AutoTokenizer.from_pretrained(load_card(card).path)
    if tokenizer.chat_template is None and fmt == "chat":
        tokenizer.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    template = official_template(tokenizer) if fmt == "official" else None
    pieces = ["x", "数", " 12", "é", "\\boxed{", "🙂", "step "]
    rows = [[{"role": "user", "content": "".join(pieces[(i + k) % 7] for k in range(n))},
             {"role": "assistant", "content": "ok"}] for i, n in enumerate(range(20, 140, 3))]  # fmt: skip
    if fmt == "chat":  # no assistant turn: no loss token (the official format refuses such a row)
        rows.append([{"role": "user", "content": "no answer"}])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exact = [i for i, n in enumerate(prompt_lengths(tokenizer, rows, fmt, template)) if n is None or n >= 100]
        fast = rows_without_loss_tokens(tokenizer, rows, fmt, 100, template)
    assert 0 < len(fast) < len(rows) and fast == exact
    if fmt == "official":
        with pytest.raises(ValueError, match=r"row 3: the official format needs one user and one assistant message"):
            rows_without_loss_tokens(tokenizer, [*rows[:3], rows[3][:1]], fmt, 100, template)


def test_rejection_sampled_rows_are_written_in_the_format_training_asks_for(tmp_path):
    from dft.data.problems import Problem
    from dft.data.training_format import file_format
    from dft.models.prompts import INSTRUCTION
    from dft.rl.rft import sft_rows, write_sft_parquet

    problems = [Problem("p0", PROBLEM, "2")]
    samples = {("p0", 0): {"correct": True, "error": None, "response": SOLUTION},
               ("p0", 1): {"correct": False, "error": None, "response": "wrong"}}  # fmt: skip
    for fmt, user in (("chat", f"{PROBLEM}\n{INSTRUCTION}"), ("official", PROBLEM)):
        rows = sft_rows(problems, samples, 2, fmt)
        assert [r["messages"] for r in rows] == [[{"role": "user", "content": user},
                                                  {"role": "assistant", "content": SOLUTION}]]  # fmt: skip
        (tmp_path / fmt).mkdir()
        write_sft_parquet(rows, fmt, tmp_path / fmt)
        assert file_format(tmp_path / fmt / "rft.parquet") == fmt
