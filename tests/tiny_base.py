"""A tiny Base model that answers some tiny-math problems, made in seconds for the RL and vLLM tests.

The quickstart makes its Base with verl's trainer (2 processes, a minute or more); tests that only need a model
whose responses are sometimes right (so rewards vary, greedy text is not one repeated token) train the tiny
model here instead: plain PyTorch, one process, cross-entropy on the assistant turn of the chat-cot conversation.
"""

from pathlib import Path

import torch

from dft.models.tiny import build_model, encode_chat


def _batch(encoded: list[tuple[list[int], int]], pad_id: int):
    width = max(len(ids) for ids, _ in encoded)
    input_ids = torch.full((len(encoded), width), pad_id)
    labels = torch.full((len(encoded), width), -100)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, (ids, prompt_len) in enumerate(encoded):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, prompt_len : len(ids)] = torch.tensor(ids[prompt_len:])
        mask[row, : len(ids)] = 1
    return input_ids, labels, mask


def train_base(model_dir: Path, records: list[dict], out: Path, steps: int = 300, batch: int = 16, lr: float = 3e-3,
               seed: int = 0) -> Path:  # fmt: skip
    """Train ``model_dir``'s model on ``records`` and save it (weights and tokenizer) to ``out``; reuse ``out``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if (out / "model.safetensors").is_file():
        return out
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    encoded = [encode_chat(tokenizer, r) for r in records]
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small runs fastest on one thread, and shares the machine best
    try:
        for _ in range(steps):
            picks = torch.randint(len(encoded), (batch,), generator=generator).tolist()
            input_ids, labels, mask = _batch([encoded[i] for i in picks], tokenizer.pad_token_id)
            loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    model.eval().save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def vllm_compatible_tiny(tokenizer_dir: Path, out: Path, seed: int = 0) -> Path:
    """The tiny model with 32-wide heads (2 heads, 1 KV head), the narrowest vLLM's CPU attention takes."""
    if not (out / "model.safetensors").is_file():
        build_model(tokenizer_dir, out, seed, num_attention_heads=2, num_key_value_heads=1)
    return out


TRAINED = 768  # problems the Base is trained on; the assets' train records after them are unseen


def make_tiny_base(root: Path):
    """(assets, base): tiny assets and a Base trained on their first TRAINED problems (greedy accuracy ~15%,
    sampled ~10% on unseen ones), with heads vLLM accepts. About 40 s of one core."""
    from dft.models.tiny import build_tiny_assets

    assets = build_tiny_assets(root / "tiny", n_train=1024, n_val=16, n_test=64, seed=0)
    random_init = vllm_compatible_tiny(assets.model_dir, root / "random")
    return assets, train_base(random_init, assets.train_records[:TRAINED], root / "base", steps=500)
