"""Tiny, code-only assets for tests and the CPU quickstart.

Everything here is built deterministically from a seed, with no downloads: a generator of
one-step grade-school word problems, a small byte-level BPE tokenizer with a Qwen-style ChatML
template, and a 2-layer ``Qwen2ForCausalLM``. The chat template renders every message on its own
(no default system prompt, no BOS), because verl's ``MultiTurnSFTDataset`` tokenizes each turn
separately, concatenates the ids, and raises if that differs from rendering the whole conversation.

CLI: ``python -m dft tiny --out DIR [--n-train N --n-val N --n-test N --seed S]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from dft.core.args import DefaultsHelpFormatter
from dft.core.io import atomic_write
from dft.models.presets import PRESET_KEY
from dft.models.prompts import chat_cot_user
from dft.models.tiny_sources import pretrain_split, write_sources

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
PAD_TOKEN, EOS_TOKEN = "<|endoftext|>", "<|im_end|>"
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
# Qwen2's pre-tokenizer regex (digits split one per token). transformers 5 rebuilds any tokenizer saved next to a
# qwen2 config as ``Qwen2Tokenizer`` with exactly this pipeline, so we train with it to tokenize identically either way.
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
MARKER_NAME = "tiny_assets.json"
ASSETS_VERSION = 4  # bump when the generator, tokenizer or model recipe changes, to force a rebuild

NAMES = ["Tom", "Anna", "Ben", "Lily", "Sam", "Mia", "Leo", "Emma", "Max", "Zoe"]
ITEMS = ["apples", "pencils", "stickers", "marbles", "cookies", "books", "coins", "cards", "shells", "eggs"]

# (operation, problem text, first solution line, second-solution-line prefix); {a}, {b}, {n}, {x} are filled in.
TEMPLATES = [
    ("+", "{n} has {a} {x} and buys {b} more. How many {x} does {n} have now?",
     "{n} starts with {a} {x}.", "{n} buys {b} more"),
    ("+", "{n} has {a} red {x} and {b} blue {x}. How many {x} does {n} have in total?",
     "{n} has {a} red {x}.", "{n} also has {b} blue {x}"),
    ("-", "{n} has {a} {x} and gives {b} to a friend. How many {x} does {n} have left?",
     "{n} starts with {a} {x}.", "{n} gives away {b}"),
    ("*", "{n} has {a} bags with {b} {x} in each bag. How many {x} does {n} have in total?",
     "{n} has {a} bags.", "Each bag has {b} {x}"),
]  # fmt: skip


def _sample_operands(op: str, rng: random.Random) -> tuple[int, int, int]:
    """Draw operands for one operation so every answer is a small non-negative integer.

    Addition/subtraction use 1..20 (subtraction keeps a > b); multiplication uses a small
    times table (2..5 x 2..9) so a tiny model has a realistic chance of learning it.
    """
    if op == "+":
        a, b = rng.randint(1, 20), rng.randint(1, 20)
        return a, b, a + b
    if op == "-":
        a = rng.randint(2, 20)
        b = rng.randint(1, a - 1)
        return a, b, a - b
    a, b = rng.randint(2, 5), rng.randint(2, 9)
    return a, b, a * b


def _render_problem(template: tuple[str, str, str, str], rng: random.Random) -> tuple[str, str, str]:
    r"""Fill one template with a random name, item and operands; return (problem, solution, gold).

    The solution is three short lines and the last one ends with ``\boxed{gold}``.
    """
    op, problem_fmt, first_fmt, second_fmt = template
    a, b, c = _sample_operands(op, rng)
    slots = {"n": rng.choice(NAMES), "x": rng.choice(ITEMS), "a": a, "b": b}
    solution = "\n".join(
        [
            first_fmt.format(**slots),
            f"{second_fmt.format(**slots)}, so {a} {op} {b} = {c}.",
            f"The answer is \\boxed{{{c}}}",
        ]
    )
    return problem_fmt.format(**slots), solution, str(c)


def make_problems(n: int, seed: int) -> list[dict]:
    r"""Generate ``n`` distinct one-step word problems, deterministically from ``seed``.

    Problems are unique by text, so any contiguous split of the list is disjoint by problem text.
    Each record has ``id``, ``problem``, ``solution`` (step by step, ending in ``\boxed{}``) and ``gold``.
    """
    rng = random.Random(seed)
    seen: set[str] = set()
    records: list[dict] = []
    for _ in range(max(100 * n, 1000)):  # the problem space is ~150k, so this never runs out in practice
        if len(records) == n:
            break
        problem, solution, gold = _render_problem(rng.choice(TEMPLATES), rng)
        if problem in seen:
            continue
        seen.add(problem)
        records.append({"id": f"tiny-{seed}-{len(records)}", "problem": problem, "solution": solution, "gold": gold})
    if len(records) != n:
        raise ValueError(f"could only generate {len(records)} distinct problems, asked for {n}")
    return records


def to_messages(record: dict) -> list[dict]:
    """Turn a problem record into the user/assistant chat used for SFT (instruction appended to the question)."""
    return [
        {"role": "user", "content": chat_cot_user(record["problem"])},
        {"role": "assistant", "content": record["solution"]},
    ]


def encode_chat(tokenizer, record: dict) -> tuple[list[int], int]:
    """Token ids of a record's whole chat and the number of prompt tokens (the chat template, as verl's dataset)."""
    messages = to_messages(record)
    prompt = tokenizer.apply_chat_template(messages[:1], add_generation_prompt=True, tokenize=True)
    full = tokenizer.apply_chat_template(messages, tokenize=True)
    prompt, full = list(getattr(prompt, "input_ids", prompt)), list(getattr(full, "input_ids", full))
    return full, len(prompt)


def write_sft_parquet(records: list[dict], path: str | os.PathLike) -> None:
    """Write records as the parquet verl's ``MultiTurnSFTDataset`` reads: ``messages`` plus ``id`` and ``gold``.

    The file is written atomically (temp file in the same directory, then ``os.replace``).
    """
    import pandas as pd

    columns = {"messages": [to_messages(r) for r in records]}
    columns.update({"id": [r["id"] for r in records], "gold": [r["gold"] for r in records]})
    atomic_write(path, lambda tmp: pd.DataFrame(columns).to_parquet(tmp, index=False))


def _write_jsonl(rows: list[dict], path: str | os.PathLike) -> None:
    """Write one JSON object per line, atomically."""
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def build_tokenizer(texts: list[str], out_dir: str | os.PathLike, vocab_size: int = 512):
    r"""Train a byte-level BPE tokenizer on ``texts`` and save it as a ChatML ``PreTrainedTokenizerFast``.

    The normalizer/pre-tokenizer are Qwen2's (NFC, its split regex with one token per digit, byte level),
    because ``AutoTokenizer`` on a qwen2 model dir rebuilds the pipeline that way. The full byte alphabet
    is kept, so any generated ASCII text, including numbers and ``\boxed{...}``, decodes back exactly.
    Returns the loaded tokenizer.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.normalizer = normalizers.NFC()
    split = pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False)
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [split, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=["<|im_start|>"],
        clean_up_tokenization_spaces=False,
        model_max_length=512,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(str(out_dir))
    return tokenizer


def build_model(
    tokenizer_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    seed: int = 0,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
):
    """Create a randomly initialised 2-layer ``Qwen2ForCausalLM`` sized for the tiny tokenizer and save it.

    Weights are float32 safetensors; the tokenizer is saved next to them so ``out_dir`` is a complete
    Hugging Face model directory. Special-token ids follow Qwen2 (bos = pad = ``<|endoftext|>``, eos =
    ``<|im_end|>``). The default heads are 16 wide; vLLM's CPU attention needs at least 32
    (``num_attention_heads=2, num_key_value_heads=1``). Returns the model.
    """
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    eos_id, pad_id = tokenizer.convert_tokens_to_ids([EOS_TOKEN, PAD_TOKEN])
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=pad_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )
    setattr(config, PRESET_KEY, "tiny-cpu")  # kept in its fine-tunes' configs: their evaluation prompt is the preset's
    with torch.random.fork_rng(devices=[]):  # seed the init without disturbing the caller's global RNG
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config).to(torch.float32)
    model.generation_config = GenerationConfig(bos_token_id=pad_id, eos_token_id=eos_id, pad_token_id=pad_id)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    return model


@dataclass
class TinyAssets:
    """Paths of the built tiny assets plus the records behind each split."""

    root: Path
    model_dir: Path
    train_parquet: Path
    val_parquet: Path
    test_jsonl: Path
    train_records: list[dict] = field(repr=False)
    val_records: list[dict] = field(repr=False)
    test_records: list[dict] = field(repr=False)


def _assets_for(root: Path, records: list[dict], n_train: int, n_val: int) -> TinyAssets:
    """Lay out the asset paths under ``root`` and split ``records`` into train/val/test."""
    return TinyAssets(
        root=root,
        model_dir=root / "model",
        train_parquet=root / "data" / "train.parquet",
        val_parquet=root / "data" / "val.parquet",
        test_jsonl=root / "data" / "test.jsonl",
        train_records=records[:n_train],
        val_records=records[n_train : n_train + n_val],
        test_records=records[n_train + n_val :],
    )


def _is_complete(assets: TinyAssets, args: dict) -> bool:
    """True if the marker records exactly ``args`` and every output file is present."""
    marker = assets.root / MARKER_NAME
    try:
        if json.loads(marker.read_text()) != args:
            return False
    except (OSError, ValueError):
        return False
    weights = [assets.model_dir / name for name in ("config.json", "model.safetensors", "tokenizer.json")]
    return all(p.exists() for p in [assets.train_parquet, assets.val_parquet, assets.test_jsonl, *weights])


def build_tiny_assets(
    root: str | os.PathLike, n_train: int = 2000, n_val: int = 64, n_test: int = 64, seed: int = 0
) -> TinyAssets:
    """Build (or reuse) the tiny model and data under ``root``.

    Layout: ``model/`` (HF model + tokenizer), ``data/train.parquet``, ``data/val.parquet`` (SFT
    chats) and ``data/test.jsonl`` (id, problem, gold; disjoint from train by problem text), and the toy scale's
    sources (``dft.models.tiny_sources``: ``data/pretrain.parquet``, ``sources/``, ``benchmarks/``). A
    marker file written last records the arguments: if it matches, nothing is rebuilt; otherwise
    everything is rebuilt, so an interrupted build is never mistaken for a finished one.
    """
    root = Path(root)
    args = {"version": ASSETS_VERSION, "n_train": n_train, "n_val": n_val, "n_test": n_test, "seed": seed}
    assets = _assets_for(root, make_problems(n_train + n_val + n_test, seed), n_train, n_val)
    if _is_complete(assets, args):
        return assets
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER_NAME).unlink(missing_ok=True)
    write_sft_parquet(assets.train_records, assets.train_parquet)
    write_sft_parquet(assets.val_records, assets.val_parquet)
    _write_jsonl([{k: r[k] for k in ("id", "problem", "gold")} for r in assets.test_records], assets.test_jsonl)
    _build_model_dir(assets.model_dir, assets.train_records, seed)
    write_sft_parquet(pretrain_split(assets.train_records)[0], root / "data" / "pretrain.parquet")
    write_sources(root, assets.train_records, assets.test_records, seed)
    atomic_write(root / MARKER_NAME, lambda tmp: Path(tmp).write_text(json.dumps(args, sort_keys=True)))
    return assets


def _build_model_dir(model_dir: Path, train_records: list[dict], seed: int) -> None:
    """Train the tokenizer on the train chats and build the model in a fresh ``model_dir``.

    Tokenizer texts are the ChatML renderings with the special tokens left out (they are added as whole tokens).
    """
    texts = ["".join(f"{m['role']}\n{m['content']}\n" for m in to_messages(r)) for r in train_records]
    shutil.rmtree(model_dir, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=model_dir.parent, prefix=".tokenizer.") as tok_dir:
        build_tokenizer(texts, tok_dir)
        build_model(tok_dir, model_dir, seed)


def main(argv: list[str] | None = None) -> TinyAssets:
    """CLI entry point: build the tiny assets and print where they are."""
    parser = argparse.ArgumentParser(
        description="Build the tiny model and math data used by tests and the CPU quickstart.",
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("--out", required=True, help="output root directory")
    parser.add_argument("--n-train", type=int, default=2000, help="training problems")
    parser.add_argument("--n-val", type=int, default=64, help="validation problems")
    parser.add_argument("--n-test", type=int, default=64, help="held-out test problems")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model and the problems")
    ns = parser.parse_args(argv)
    assets = build_tiny_assets(ns.out, n_train=ns.n_train, n_val=ns.n_val, n_test=ns.n_test, seed=ns.seed)
    for name in ("model_dir", "train_parquet", "val_parquet", "test_jsonl"):
        print(f"{name}: {getattr(assets, name)}")
    return assets


if __name__ == "__main__":
    main()
