"""In-process training of the tiny model with this repo's losses, for benchmarks that need trained tiny models fast.

One process, plain PyTorch AdamW, the loss functions of ``dft.train.losses.registry`` called on verl's no-padding
layout (jagged
input ids and loss mask, flat next-token log-probs), so a loss here is the one ``dft train`` optimises. The chat is
rendered by the tiny tokenizer's template; the loss mask covers the assistant turn (its end-of-turn included).
"""

import random

import torch
from verl.utils import tensordict_utils as tu

from dft.train.losses.registry import get_loss_fn, loss_config_from


def encode(tokenizer, messages: list[dict]) -> tuple[list[int], int]:
    """Token ids of the whole chat and the number of prompt tokens (template with the generation prompt)."""
    prompt = tokenizer.apply_chat_template(messages[:1], add_generation_prompt=True, tokenize=True)
    full = tokenizer.apply_chat_template(messages, tokenize=True)
    prompt, full = list(getattr(prompt, "input_ids", prompt)), list(getattr(full, "input_ids", full))
    return full, len(prompt)


def flat_log_probs(model, rows: list[tuple[list[int], int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(flat next-token log-probs, flat logits) of the rows, packed as verl's no-padding layout packs them."""
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.zeros(len(rows), width, dtype=torch.long)
    attention = torch.zeros(len(rows), width, dtype=torch.long)
    for i, (ids, _) in enumerate(rows):
        input_ids[i, : len(ids)], attention[i, : len(ids)] = torch.tensor(ids), 1
    logits = model(input_ids=input_ids, attention_mask=attention).logits
    flat_logits = torch.cat([logits[i, : len(ids)] for i, (ids, _) in enumerate(rows)])
    targets = torch.roll(torch.cat([torch.tensor(ids) for ids, _ in rows]), shifts=-1)
    log_probs = torch.log_softmax(flat_logits.float(), -1).gather(-1, targets[:, None]).squeeze(-1)
    return log_probs, flat_logits


def loss_batch(rows: list[tuple[list[int], int]], log_probs: torch.Tensor):
    """(model_output, data) of the rows in verl's no-padding layout, one data-parallel rank."""
    ids = [torch.tensor(r) for r, _ in rows]
    masks = [torch.tensor([0] * p + [1] * (len(r) - p)) for r, p in rows]
    data = tu.get_tensordict(
        tensor_dict={
            "input_ids": torch.nested.as_nested_tensor(ids, layout=torch.jagged),
            "loss_mask": torch.nested.as_nested_tensor(masks, layout=torch.jagged),
        },
        non_tensor_dict={"pad_mode": "no_padding", "batch_num_tokens": int(sum(m.sum() for m in masks)), "dp_size": 1},
    )
    offsets = torch.tensor([0, *torch.cumsum(torch.tensor([len(i) for i in ids]), 0).tolist()])
    return {"log_probs": torch.nested.nested_tensor_from_jagged(log_probs, offsets)}, data


def train(model, rows, loss: dict, steps: int, batch: int = 32, lr: float = 3e-3, seed: int = 0) -> list[float]:
    """Train ``model`` in place for ``steps`` AdamW steps of ``batch`` rows on loss section ``loss``; the nll."""
    loss_fn = get_loss_fn(loss_config_from(loss))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.01)
    order, nll = random.Random(seed), []
    model.train()
    for _ in range(steps):
        chosen = order.sample(rows, batch)
        log_probs, _ = flat_log_probs(model, chosen)
        model_output, data = loss_batch(chosen, log_probs)
        value, metrics = loss_fn(model_output, data)
        optimizer.zero_grad()
        value.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        nll.append(float(metrics["train/nll"].aggregate()))
    model.eval()
    return nll
