"""loss.normalization=official takes the official 8-GPU step on any layout: ``loss.official_micro_batches`` (8)
times the gradient of the mean of all micro-batch means, whatever the processes and micro-batches per process, on
the same micro-batches (dft/train/official_layout.py). Checked on the loss (DFT, every layout of the same
micro-batches),
on the sampler (the official micro-batches on 1 to 32 ranks), and through verl's engine (1 and 2 processes of
micro-batch 1, and of micro-batch 2, against the official arithmetic in float64)."""

import math

import pytest
import torch
from conftest import FP32, check_ok, read_log, run_module, tiny_overrides
from test_losses_on_cpu import EIGHT, engine_step, make_sequences, reference_token_terms
from test_normalization_on_cpu import tiny_dataset

from dft.train.losses.registry import LossConfig, get_loss_fn


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


def official_arithmetic_grad_norm(tiny, batch, micro_batch, official_micro_batches=8):
    """The official 8-GPU step on the first global batch (verl's sampler, seed 0), in float64 from the Hugging Face
    model: ``M_o`` x the gradient of the mean over micro-batches of their DFT token means. The micro-batches are
    consecutive runs of ``micro_batch`` rows of the batch: the official layout of one rank (``batch = micro_batch x
    M_o``), or rows alone (micro-batch 1)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny.model_dir, dtype=torch.float64, attn_implementation="eager")
    dataset = tiny_dataset(str(tiny.model_dir), str(tiny.train_parquet))
    rows = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0)).tolist()[:batch]
    sums, counts = [], []
    for index in rows:
        item = dataset[index]
        log_probs = torch.log_softmax(model(item["input_ids"][None]).logits[0, :-1], dim=-1)
        token = log_probs.gather(-1, item["input_ids"][1:, None]).squeeze(-1)
        mask = item["loss_mask"][1:].to(torch.float64)
        sums.append(-(mask * token.detach().exp() * token).sum())
        counts.append(mask.sum())
    means = [sum(sums[i : i + micro_batch]) / sum(counts[i : i + micro_batch]) for i in range(0, batch, micro_batch)]
    (official_micro_batches * torch.stack(means).mean()).backward()
    return math.sqrt(sum(float((p.grad**2).sum()) for p in model.parameters() if p.grad is not None))


def step1_grad_norm(tiny, run_dir, nproc, batch, micro_batch):
    args = tiny_overrides(tiny, run_dir, steps=1) + FP32 + [
        "data.val_files=null", "loss.name=dft", "loss.normalization=official", "data.use_dynamic_bsz=False",
        f"data.train_batch_size={batch}", f"data.micro_batch_size_per_gpu={micro_batch}",
        "checkpoint.save_contents=[model]",
    ]  # fmt: skip
    check_ok(run_module("train", args, run_dir / "log.jsonl", nproc=nproc))
    return read_log(run_dir / "log.jsonl")[1]["train/grad_norm"]


# (rows, micro-batch): 4 rows alone (any layout has those micro-batches); 16 rows in pairs, the official layout of
# one rank of 8 micro-batches, which 2 processes keep only through dft/train/official_layout.py (verl's sampler would
# pair rows 0 and 2, 1 and 3, ...)
@pytest.mark.parametrize("batch,micro_batch", [(4, 1), (16, 2)])
def test_one_and_two_processes_take_the_official_8_gpu_step(tiny, tmp_path, batch, micro_batch):
    one, two = (step1_grad_norm(tiny, tmp_path / f"n{n}", n, batch, micro_batch) for n in (1, 2))
    reference = official_arithmetic_grad_norm(tiny, batch, micro_batch)
    print(f"step-1 train/grad_norm ({batch} rows, micro-batch {micro_batch}): 1 process {one}, 2 processes {two}, "
          f"official float64 {reference}")  # fmt: skip
    assert math.isclose(one, two, rel_tol=1e-5), (one, two)
    assert math.isclose(one, reference, rel_tol=1e-4), (one, reference)


# --- the sampler: the official micro-batches on any number of ranks ------------------------------------------


def step_micro_batches(per_rank: list[list[int]], share: int, micro_batch: int, steps: int) -> list[set]:
    """Per step, the set of micro-batches (frozensets of rows) that ranks holding ``per_rank`` rows would run."""
    out = []
    for step in range(steps):
        rows = [ranked[step * share : (step + 1) * share] for ranked in per_rank]
        out.append({frozenset(r[i : i + micro_batch]) for r in rows for i in range(0, share, micro_batch)})
    return out


def test_every_rank_count_runs_the_official_micro_batches():
    from torch.utils.data import DistributedSampler

    from dft.train.official_layout import OfficialLayoutSampler, official_ranks

    data, batch, micro, m_o = list(range(1000)), 64, 2, 4  # the official run: 64 / (2 x 4) = 8 ranks
    official = [
        DistributedSampler(data, num_replicas=8, rank=o, shuffle=True, seed=0, drop_last=True) for o in range(8)
    ]
    for epoch in (0, 1):
        for sampler in official:
            sampler.set_epoch(epoch)
        steps = len(official[0]) // (batch // 8)
        expected = step_micro_batches([list(s) for s in official], batch // 8, micro, steps)
        for ranks in (1, 2, 4, 16, 32):
            layout = official_ranks(batch, micro, m_o, ranks)
            assert layout == 8
            samplers = [OfficialLayoutSampler(data, ranks, r, layout, batch) for r in range(ranks)]
            for sampler in samplers:
                sampler.set_epoch(epoch)
            assert {len(s) for s in samplers} == {steps * batch // ranks}
            assert step_micro_batches([list(s) for s in samplers], batch // ranks, micro, steps) == expected, ranks
    # verl's own sampler where it is the official layout already, or where the official one cannot be laid
    assert official_ranks(batch, micro, m_o, 8) is None and official_ranks(batch, micro, m_o, 64) is None
    assert official_ranks(52, micro, m_o, 2) is None  # 52 rows are no whole number of official ranks
