"""loss.normalization through verl's real engine (FSDP2, gloo, 2 processes, 4 fixed micro-batches each): each
normalisation's step-1 loss and gradient norm against an independent float64 computation of its own formula from
the Hugging Face model, and the factor of about M between them."""

import math
from functools import cache

import pytest
import torch
from conftest import FP32, check_ok, compose_config, read_log, run_module, tiny_overrides

from dft.train.official_layout import official_ranks

BATCH = 32


@cache
def tiny_dataset(model_dir, train_parquet):
    from transformers import AutoTokenizer
    from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

    cfg = compose_config(["preset=tiny-cpu", f"model.path={model_dir}"])
    return MultiTurnSFTDataset(str(train_parquet), AutoTokenizer.from_pretrained(model_dir), cfg.data)


def dft_step_reference(model_dir, dataset, batch, normalization, dp_size, micro_batch, official_micro_batches=8):
    """(logged loss, gradient norm) of step 1 of DFT by the formula, in float64 from the Hugging Face model. The
    global batch is what verl's DistributedSampler draws first (seed 0): rank r takes rows perm[r::R], and its
    micro-batches are consecutive runs of ``micro_batch`` rows (``official``: of the official layout's ranks, where
    dft/train/official_layout.py lays it on these ranks). ``official``: this layout's sum of micro-batch
    means (M per rank) averaged over ranks, logged divided by M, its gradient scaled to the official run's
    ``official_micro_batches`` per rank (M_o / M)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64, attn_implementation="eager")
    first = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0)).tolist()[:batch]
    sums, counts = {}, {}
    for index in first:
        item = dataset[index]
        log_probs = torch.log_softmax(model(item["input_ids"][None]).logits[0, :-1], dim=-1)
        token_lp = log_probs.gather(-1, item["input_ids"][1:, None]).squeeze(-1)
        mask = item["loss_mask"][1:].to(torch.float64)
        sums[index] = -(mask * token_lp.detach().exp() * token_lp).sum()  # DFT: -sum_t sg(p_t) log p_t
        counts[index] = float(mask.sum())
    if normalization == "token":
        objective = logged = sum(sums.values()) / sum(counts.values())
    else:
        # the micro-batches are the official layout's where dft/train/official_layout.py lays it on these ranks
        layout = official_ranks(batch, micro_batch, official_micro_batches, dp_size) or dp_size
        ranks = [first[r::layout][: batch // layout] for r in range(layout)]
        chunks = [rows[i : i + micro_batch] for rows in ranks for i in range(0, len(rows), micro_batch)]
        per_rank = batch // dp_size // micro_batch
        summed = sum(sum(sums[i] for i in c) / sum(counts[i] for i in c) for c in chunks) / dp_size
        logged, objective = summed / per_rank, summed * official_micro_batches / per_rank
    objective.backward()
    norm = math.sqrt(sum(float((p.grad**2).sum()) for p in model.parameters() if p.grad is not None))
    return float(logged.detach()), norm


def reference(tiny, normalization, dp_size, micro_batch):
    dataset = tiny_dataset(str(tiny.model_dir), str(tiny.train_parquet))
    return dft_step_reference(tiny.model_dir, dataset, BATCH, normalization, dp_size, micro_batch)


def engine_step1(tiny, tmp_path, normalization, nproc, micro_batch):
    run_dir = tmp_path / f"{normalization}-{nproc}-{micro_batch}"
    layout = [f"loss.normalization={normalization}", "data.use_dynamic_bsz=False",
              f"data.micro_batch_size_per_gpu={micro_batch}", "checkpoint.save_contents=[model]"]  # fmt: skip
    args = tiny_overrides(tiny, run_dir, steps=1) + FP32 + layout
    check_ok(run_module("train", args, run_dir / "log.jsonl", nproc=nproc))
    step = read_log(run_dir / "log.jsonl")[1]
    return step["train/loss"], step["train/grad_norm"]


# (normalisation, processes, micro-batch per process): 2 ranks of 4 micro-batches. The token mean's invariance to
# the split and the DP size through the engine: test_train_on_cpu's layouts all match this same reference value;
# the official formula's dependence on the split: test_losses_on_cpu.
LAYOUTS = [("token", 2, 4), ("official", 2, 4)]


@pytest.fixture(scope="module")
def engine_runs(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("normalization")
    return {layout: engine_step1(tiny, root, *layout) for layout in LAYOUTS}


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: "-".join(map(str, layout)))
def test_step1_loss_and_grad_norm_match_the_float64_formula(layout, engine_runs, tiny):
    loss, grad_norm = engine_runs[layout]
    ref_loss, ref_norm = reference(tiny, *layout)
    assert math.isclose(loss, ref_loss, rel_tol=2e-5), (layout, loss, ref_loss)
    assert math.isclose(grad_norm, ref_norm, rel_tol=1e-4), (layout, grad_norm, ref_norm)


def test_the_official_gradient_is_about_m_times_the_token_means(engine_runs):
    (token_loss, token_norm), (official_loss, official_norm) = engine_runs[LAYOUTS[0]], engine_runs[LAYOUTS[1]]
    # M_o = 8 (the official run's micro-batches per rank) times the mean of micro-batch means: about 8x the norm;
    # logged divided by this run's M = 4, about the same loss
    assert 6 < official_norm / token_norm < 10
    assert 0.7 < official_loss / token_loss < 1.3
