"""loss.normalization=official takes the official 8-GPU step on any layout: ``loss.official_micro_batches`` (8)
times the gradient of the mean of all micro-batch means, whatever the processes and micro-batches per process, as
long as the micro-batches hold the same rows. Checked on the loss (DFT, every layout of the same micro-batches)
and through verl's engine (1 and 2 processes of micro-batch 1 against the official arithmetic in float64)."""

import math

import pytest
import torch
from conftest import FP32, check_ok, read_log, run_module, tiny_overrides
from test_losses_on_cpu import EIGHT, engine_step, make_sequences, reference_token_terms
from test_normalization_on_cpu import tiny_dataset

from dft.losses import LossConfig, get_loss_fn


def official_gradient(seqs, micro_batches, official_micro_batches=8):
    """float64 from raw logits: ``M_o`` x the gradient of the mean over micro-batches of their DFT token means."""
    logits = [s["logits"].detach().clone().requires_grad_(True) for s in seqs]
    means = []
    for rows in micro_batches:
        p, ce = reference_token_terms([dict(seqs[i], logits=logits[i]) for i in rows])
        means.append((p.detach() * ce).mean())
    (official_micro_batches * torch.stack(means).mean()).backward()
    return [g.grad for g in logits]


def layouts(micro_batch, ranks):
    """The micro-batches 0..7 in runs of ``micro_batch`` rows, dealt to ``ranks`` ranks in order."""
    chunks = [list(range(i, i + micro_batch)) for i in range(0, 8, micro_batch)]
    per_rank = len(chunks) // ranks
    return [chunks[r * per_rank : (r + 1) * per_rank] for r in range(ranks)]


@pytest.mark.parametrize("micro_batch", [1, 2])
def test_every_layout_of_the_same_micro_batches_takes_the_official_step(micro_batch):
    # 8 rows: 1, 2, 4 or 8 ranks (M = 8 / micro_batch / ranks micro-batches each), the same micro-batches
    seqs = make_sequences(**EIGHT)
    loss_fn = get_loss_fn(LossConfig("dft", normalization="official"))
    for ranks in (1, 2, 4, 8 // micro_batch):
        parts = layouts(micro_batch, ranks)
        logged, grads = engine_step(loss_fn, seqs, parts, micro_batch)
        reference = official_gradient(seqs, [rows for rank in parts for rows in rank])
        for g, r in zip(grads, reference):
            torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-15)
        # logged: the mean of the micro-batch means (the official train/loss), on every layout
        assert logged == pytest.approx(mean_of_micro_batch_means(seqs, parts), rel=1e-12), ranks


def mean_of_micro_batch_means(seqs, parts) -> float:
    """The mean of the micro-batches' DFT token means (what the official trainer logs), in float64."""
    means = []
    for rows in (rows for rank in parts for rows in rank):
        p, ce = reference_token_terms([seqs[i] for i in rows])
        means.append(float((p * ce).mean()))
    return sum(means) / len(means)


def test_the_official_scale_is_a_key_and_one_official_micro_batch_is_the_mean_of_means():
    seqs = make_sequences(**EIGHT)
    parts = layouts(2, 2)
    _, eight = engine_step(get_loss_fn(LossConfig("dft", normalization="official")), seqs, parts, 2)
    one = get_loss_fn(LossConfig("dft", normalization="official", official_micro_batches=1))
    _, grads = engine_step(one, seqs, parts, 2)
    for a, b in zip(eight, grads):
        torch.testing.assert_close(a, 8 * b, rtol=1e-10, atol=1e-15)
    with pytest.raises(ValueError, match="loss.official_micro_batches=0"):
        LossConfig("dft", normalization="official", official_micro_batches=0)


# --- through verl's engine: the same 4 rows, each its own micro-batch, on 1 and on 2 processes ------------------

BATCH = 4


def official_arithmetic_grad_norm(tiny, official_micro_batches=8):
    """The official 8-GPU step on the first global batch (verl's sampler, seed 0), in float64 from the Hugging Face
    model: ``M_o`` x the gradient of the mean of the per-row DFT token means (micro-batch 1: a row per micro-batch)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny.model_dir, dtype=torch.float64, attn_implementation="eager")
    dataset = tiny_dataset(str(tiny.model_dir), str(tiny.train_parquet))
    rows = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0)).tolist()[:BATCH]
    means = []
    for index in rows:
        item = dataset[index]
        log_probs = torch.log_softmax(model(item["input_ids"][None]).logits[0, :-1], dim=-1)
        token = log_probs.gather(-1, item["input_ids"][1:, None]).squeeze(-1)
        mask = item["loss_mask"][1:].to(torch.float64)
        means.append(-(mask * token.detach().exp() * token).sum() / mask.sum())
    (official_micro_batches * torch.stack(means).mean()).backward()
    return math.sqrt(sum(float((p.grad**2).sum()) for p in model.parameters() if p.grad is not None))


def step1_grad_norm(tiny, run_dir, nproc):
    args = tiny_overrides(tiny, run_dir, steps=1) + FP32 + [
        "data.val_files=null", "loss.name=dft", "loss.normalization=official", "data.use_dynamic_bsz=False",
        f"data.train_batch_size={BATCH}", "data.micro_batch_size_per_gpu=1", "checkpoint.save_contents=[model]",
    ]  # fmt: skip
    check_ok(run_module("dft.train", args, run_dir / "log.jsonl", nproc=nproc))
    return read_log(run_dir / "log.jsonl")[1]["train/grad_norm"]


def test_one_and_two_processes_take_the_official_8_gpu_step(tiny, tmp_path):
    one, two = (step1_grad_norm(tiny, tmp_path / f"n{n}", n) for n in (1, 2))
    reference = official_arithmetic_grad_norm(tiny)
    print(f"step-1 train/grad_norm: 1 process {one}, 2 processes {two}, official float64 {reference}")
    assert math.isclose(one, two, rel_tol=1e-5), (one, two)
    assert math.isclose(one, reference, rel_tol=1e-4), (one, reference)
