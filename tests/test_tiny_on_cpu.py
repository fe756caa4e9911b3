"""CPU tests for dft.models.tiny: deterministic data, a lossless tokenizer whose chat template works with
verl's MultiTurnSFTDataset, and a loadable tiny Qwen2 model."""

import json
import os
import re

import pandas as pd
import pytest
import torch

from dft.models.prompts import INSTRUCTION
from dft.models.tiny import EOS_TOKEN, build_tiny_assets, main, make_problems, to_messages

BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """Small but complete asset set, built once for the module."""
    return build_tiny_assets(tmp_path_factory.mktemp("tiny"), n_train=200, n_val=16, n_test=16, seed=0)


@pytest.fixture(scope="module")
def tokenizer(assets):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(assets.model_dir))


def _sft_data_config(**overrides):
    """verl's default SFT ``data`` config (sft_trainer_engine.yaml) with test overrides."""
    import verl
    from omegaconf import OmegaConf

    yaml_path = os.path.join(os.path.dirname(verl.__file__), "trainer", "config", "sft_trainer_engine.yaml")
    data = OmegaConf.load(yaml_path).data
    for key, value in overrides.items():
        data[key] = value
    return data


def test_problems_are_deterministic_and_seed_dependent():
    assert make_problems(50, seed=0) == make_problems(50, seed=0)
    assert make_problems(50, seed=0) != make_problems(50, seed=1)
    assert make_problems(20, seed=3) == make_problems(50, seed=3)[:20]


def test_problems_are_unique_and_well_formed():
    records = make_problems(1000, seed=0)
    assert len({r["problem"] for r in records}) == len(records)
    assert len({r["id"] for r in records}) == len(records)
    assert {"id", "problem", "solution", "gold"} <= set(records[0])


def test_last_boxed_is_the_correct_answer():
    for r in make_problems(1000, seed=0):
        last_line = r["solution"].splitlines()[-1]
        assert last_line.endswith("\\boxed{" + r["gold"] + "}")
        assert BOXED.findall(r["solution"])[-1] == r["gold"]
        a, op, b, c = re.search(r"(\d+) ([-+*]) (\d+) = (\d+)", r["solution"]).groups()
        assert OPS[op](int(a), int(b)) == int(c) == int(r["gold"]) >= 0


def test_to_messages_appends_instruction():
    r = make_problems(1, seed=0)[0]
    user, assistant = to_messages(r)
    assert user == {"role": "user", "content": r["problem"] + "\n" + INSTRUCTION}
    assert assistant == {"role": "assistant", "content": r["solution"]}


def test_splits_are_disjoint_and_written(assets):
    train = pd.read_parquet(assets.train_parquet)
    val = pd.read_parquet(assets.val_parquet)
    test = [json.loads(line) for line in assets.test_jsonl.read_text().splitlines()]
    assert (len(train), len(val), len(test)) == (200, 16, 16)
    assert set(test[0]) == {"id", "problem", "gold"}
    train_problems = {r["problem"] for r in assets.train_records}
    assert not train_problems & {r["problem"] for r in test}
    assert not train_problems & {r["problem"] for r in assets.val_records}
    first = list(train["messages"].iloc[0])
    assert [dict(m) for m in first] == to_messages(assets.train_records[0])
    assert list(train["gold"]) == [r["gold"] for r in assets.train_records]


def test_tokenizer_round_trips_and_is_small(assets, tokenizer):
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(assets.model_dir / "tokenizer.json"))
    texts = [m["content"] for r in assets.train_records + assets.test_records for m in to_messages(r)]
    texts += ["\\boxed{12345}", "x = -7.\n\nThe answer is \\boxed{0}", "Zebra 99 * 3 = 297!"]
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
        assert ids == raw.encode(text, add_special_tokens=False).ids  # AutoTokenizer pipeline == trained pipeline
    assert 300 <= len(tokenizer) <= 600
    assert tokenizer.eos_token == EOS_TOKEN and tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.pad_token_id != tokenizer.eos_token_id


def test_chat_template_renders_messages_independently(assets, tokenizer):
    messages = to_messages(assets.train_records[0])
    whole = tokenizer.apply_chat_template(messages, tokenize=False)
    parts = [tokenizer.apply_chat_template([m], tokenize=False) for m in messages]
    assert whole == "".join(parts)
    assert parts[1] == "<|im_start|>assistant\n" + messages[1]["content"] + "<|im_end|>\n"
    prompt = tokenizer.apply_chat_template(messages[:1], add_generation_prompt=True, tokenize=False)
    assert prompt == parts[0] + "<|im_start|>assistant\n"
    prompt_ids = tokenizer.apply_chat_template(messages[:1], add_generation_prompt=True)["input_ids"]
    whole_ids = tokenizer.apply_chat_template(messages)["input_ids"]
    assert whole_ids[: len(prompt_ids)] == prompt_ids


@pytest.mark.parametrize("pad_mode", ["no_padding", "right"])
def test_verl_multiturn_sft_dataset_loads_and_masks_assistant(assets, tokenizer, pad_mode):
    from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

    config = _sft_data_config(pad_mode=pad_mode, max_length=128)
    dataset = MultiTurnSFTDataset(str(assets.train_parquet), tokenizer, config)
    assert len(dataset) == 200
    for i in range(0, 200, 25):  # __getitem__ raises if per-message ids != whole-conversation ids
        item = dataset[i]
        messages = to_messages(assets.train_records[i])
        whole = tokenizer.apply_chat_template(messages)["input_ids"]
        n = len(whole)
        assert item["input_ids"][:n].tolist() == whole
        prompt = tokenizer.apply_chat_template(messages[:1], add_generation_prompt=True)["input_ids"]
        expected_mask = [0] * len(prompt) + [1] * (n - len(prompt))
        assert item["loss_mask"][:n].tolist() == expected_mask
        trained = item["input_ids"][:n][item["loss_mask"][:n].bool()]
        assert tokenizer.decode(trained) == messages[1]["content"] + "<|im_end|>\n"
        if pad_mode == "right":
            assert item["input_ids"].shape == (128,) and int(item["attention_mask"].sum()) == n
            assert not item["loss_mask"][n:].any()


def test_model_loads_and_produces_logits(assets, tokenizer):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(assets.model_dir))
    assert type(model).__name__ == "Qwen2ForCausalLM" and model.dtype == torch.float32
    eos_id = tokenizer.convert_tokens_to_ids(EOS_TOKEN)
    assert model.config.eos_token_id == model.generation_config.eos_token_id == eos_id
    assert model.config.pad_token_id == model.generation_config.pad_token_id == tokenizer.pad_token_id
    assert model.config.vocab_size == len(tokenizer)
    assert (assets.model_dir / "model.safetensors").exists()
    batch = tokenizer([r["problem"] for r in assets.test_records[:2]], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, batch["input_ids"].shape[1], len(tokenizer))
    assert torch.isfinite(logits).all()


def test_build_is_idempotent_and_rebuilds_on_new_args(tmp_path, capsys):
    root = tmp_path / "assets"
    first = build_tiny_assets(root, n_train=40, n_val=4, n_test=4, seed=1)
    weights = first.model_dir / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    again = main(["--out", str(root), "--n-train", "40", "--n-val", "4", "--n-test", "4", "--seed", "1"])
    assert weights.stat().st_mtime_ns == mtime and again.train_records == first.train_records
    assert str(first.test_jsonl) in capsys.readouterr().out
    rebuilt = build_tiny_assets(root, n_train=30, n_val=4, n_test=4, seed=2)
    assert len(pd.read_parquet(rebuilt.train_parquet)) == 30
    assert json.loads((root / "tiny_assets.json").read_text())["seed"] == 2


def test_tokenizer_and_weights_are_reproducible(tmp_path):
    from safetensors.torch import load_file

    from dft.models.tiny import build_model, build_tokenizer

    texts = [m["content"] for r in make_problems(100, seed=0) for m in to_messages(r)]
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        build_tokenizer(texts, tmp_path / f"tok_{name}")
        build_model(tmp_path / f"tok_{name}", tmp_path / f"model_{name}", seed=seed)
    tok_a, tok_b = ((tmp_path / f"tok_{n}" / "tokenizer.json").read_text() for n in "ab")
    assert tok_a == tok_b
    w_a, w_b, w_c = (load_file(tmp_path / f"model_{n}" / "model.safetensors") for n in "abc")
    assert all(torch.equal(w_a[k], w_b[k]) for k in w_a)
    assert not all(torch.equal(w_a[k], w_c[k]) for k in w_a)
