"""asft end to end on the tiny model: the reference's top-K scored by verl's engine (``dft ref_logprobs ref.topk``),
then one step of ``dft train`` (2 processes) whose loss and KL are held to float64 formulas.

The stored top-K log-probs are replaced by a uniform distribution over the K + 1 buckets, so that the KL at step
1 is far from 0 and has a value computed here from the float64 model; eos targets keep weight 1
(``loss.full_weight_tokens=[eos]``). prob_power and full_weight_tokens under dft and prob_power are covered by
float64 unit tests (tests/test_beyond_losses_on_cpu.py); they run through the same trainer without the hook.
"""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import FP32, check_ok, compose_config, read_log, run_module, tiny_overrides

from dft.train.columns import TOPK_IDS, TOPK_LOG_PROBS, TOPK_REST
from dft.train.ref_topk import with_topk_metadata

K = 4
ROWS = 32  # tiny-cpu's train_batch_size: step 1 sees every row


def float64_targets(tiny, rows):
    """Per row: the float64 log-softmax at each target position and the target ids (verl's tokenisation)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

    cfg = compose_config(["preset=tiny-cpu", f"model.path={tiny.model_dir}"])
    tokenizer = AutoTokenizer.from_pretrained(tiny.model_dir)
    dataset = MultiTurnSFTDataset(str(tiny.train_parquet), tokenizer, cfg.data)
    model = AutoModelForCausalLM.from_pretrained(tiny.model_dir, dtype=torch.float64, attn_implementation="eager")
    out = []
    with torch.no_grad():
        for row in range(rows):
            item = dataset[row]
            positions = item["loss_mask"][1:].bool()
            log_probs = torch.log_softmax(model(item["input_ids"][None]).logits[0, :-1], dim=-1)[positions]
            out.append((log_probs, item["input_ids"][1:][positions]))
    return out, tokenizer.eos_token_id


@pytest.fixture(scope="module")
def scored_topk(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("topk")
    pd.read_parquet(tiny.train_parquet).head(ROWS).to_parquet(root / "train.parquet", index=False)
    args = ["preset=tiny-cpu", f"model.path={tiny.model_dir}", f"data.train_files={root / 'train.parquet'}",
            f"ref.output={root / 'train.top.parquet'}", f"ref.topk={K}", "ref.rows_per_step=16", *FP32]  # fmt: skip
    check_ok(run_module("ref_logprobs", args, root / "score.log", nproc=2))
    return root, pd.read_parquet(root / "train.top.parquet")


def test_asft_scores_the_top_k_and_trains_one_step_to_its_float64_formula(tiny, scored_topk, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root, frame = scored_topk
    targets, eos = float64_targets(tiny, ROWS)
    assert any(bool((target == eos).any()) for _, target in targets)  # full_weight_tokens=[eos] has targets to keep
    # the scorer's top-K is the float64 model's (sorted values: near-ties may swap ids), float16 on disk
    for row in range(3):
        log_q = targets[row][0]
        top = log_q.topk(K, dim=-1).values
        stored = np.asarray(frame[TOPK_LOG_PROBS][row], dtype=np.float64).reshape(-1, K)
        np.testing.assert_allclose(stored, top.numpy(), rtol=2e-3)
        rest = torch.log1p(-top.exp().sum(-1))
        np.testing.assert_allclose(np.asarray(frame[TOPK_REST][row], dtype=np.float64), rest.numpy(), rtol=2e-3)
    # a uniform reference over the K + 1 buckets: KL_K(q || p) = sum_b 1/(K+1) log(1/(K+1) / p_b)
    uniform = -math.log(K + 1)
    frame[TOPK_LOG_PROBS] = [np.full(len(v), uniform, dtype=np.float16) for v in frame[TOPK_LOG_PROBS]]
    frame[TOPK_REST] = [np.full(len(v), uniform, dtype=np.float16) for v in frame[TOPK_REST]]
    data = tmp_path / "uniform.parquet"
    pq.write_table(with_topk_metadata(pa.Table.from_pandas(frame, preserve_index=False), K), data)
    beta = 0.5
    args = tiny_overrides(tiny, tmp_path, steps=1) + [f"data.train_files={data}", "data.val_files=null", *FP32]
    args += ["loss.name=asft", f"loss.kl_beta={beta}", "loss.full_weight_tokens=[eos]"]
    check_ok(run_module("train", args, tmp_path / "log.jsonl", nproc=2))
    step1 = read_log(tmp_path / "log.jsonl")[1]

    terms, kls = [], []
    for (log_p, target), ids in zip(targets, frame[TOPK_IDS]):
        lp = log_p.gather(-1, target[:, None]).squeeze(-1)
        weight = torch.where(target == eos, torch.ones_like(lp), lp.exp())
        terms.append(-weight * lp)
        ids = torch.as_tensor(np.asarray(ids), dtype=torch.long).view(-1, K)
        p_top = log_p.exp().gather(-1, ids)
        buckets = torch.cat([p_top, 1 - p_top.sum(-1, keepdim=True)], dim=-1)
        kls.append(uniform - buckets.log().mean(-1))
    kl = torch.cat(kls).mean().item()
    assert kl > 0.05
    assert step1["train/kl"] == pytest.approx(kl, rel=1e-4)
    assert step1["train/loss"] == pytest.approx(torch.cat(terms).mean().item() + beta * kl, rel=1e-4)
