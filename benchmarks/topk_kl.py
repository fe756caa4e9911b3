"""How close the stored top-K KL of ``asft`` (``KL_K``, dft/train/ref_topk.py) is to the exact KL, on the tiny model.

The reference is the tiny model after ``--ref-steps`` SFT steps (its next-token distributions peaked as a trained
LM's are; ``--ref-steps 0`` keeps the random, nearly uniform one), the policy is the reference after
``--drift-steps`` more DFT steps (benchmarks/tiny_train.py, this repo's losses). At every target position of the
held-out rows: the exact ``KL(q || p)`` over the vocabulary in float64 (plain softmaxes), and ``KL_K`` as the
trainer computes it: the reference's top-K by ``topk_of_logits``, stored through float16 (``storage_row``), then
``bucket_kl`` on the policy's logits. Reported: mean KL and mean ``KL_K``, their relative gap, the reference's mean
mass inside its top-K.

    python benchmarks/topk_kl.py --out /tmp/topk_kl [--ref-steps 0 100 --drift-steps 30 --batch 16]
"""

import argparse
import json
from pathlib import Path

import pandas as pd
import torch
from tiny_train import encode, flat_log_probs, train
from transformers import AutoModelForCausalLM, AutoTokenizer

from dft.models.tiny import build_tiny_assets
from dft.train.columns import TOPK_IDS, TOPK_LOG_PROBS, TOPK_REST
from dft.train.ref_topk import bucket_kl, storage_row, topk_of_logits

KS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def rows_of(tokenizer, parquet: Path, n: int) -> list[tuple[list[int], int]]:
    return [encode(tokenizer, list(m)) for m in pd.read_parquet(parquet)["messages"][:n]]


def target_logits(model, rows) -> torch.Tensor:
    """Logits (float64) at every target position of ``rows`` (positions whose successor is trained)."""
    with torch.no_grad():
        _, logits = flat_log_probs(model, rows)
    mask = torch.cat([torch.tensor([0] * p + [1] * (len(ids) - p)) for ids, p in rows])
    return logits.double()[torch.roll(mask, -1).bool()]


def measure(ref_logits: torch.Tensor, policy_logits: torch.Tensor) -> list[dict]:
    log_q, log_p = ref_logits.log_softmax(-1), policy_logits.log_softmax(-1)
    exact = (log_q.exp() * (log_q - log_p)).sum(-1).mean().item()
    out = []
    rows = torch.arange(len(ref_logits))
    for k in KS:
        if k >= ref_logits.shape[-1]:
            continue
        stored = storage_row(*topk_of_logits(ref_logits.float(), k))
        ids = torch.as_tensor(stored[TOPK_IDS]).long().view(-1, k)
        lp = torch.as_tensor(stored[TOPK_LOG_PROBS]).float().view(-1, k)
        rest = torch.as_tensor(stored[TOPK_REST]).float()
        kl_k = bucket_kl(policy_logits.float(), rows, ids, lp, rest).mean().item()
        mass = log_q.exp().gather(-1, ids).sum(-1).mean().item()
        out.append({"k": k, "exact_kl": exact, "kl_k": kl_k, "rel_gap": (exact - kl_k) / exact, "ref_top_mass": mass})
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--ref-steps", type=int, nargs="+", default=[0, 100])
    parser.add_argument("--drift-steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--eval-rows", type=int, default=32)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    assets = build_tiny_assets(args.out / "tiny", n_train=256, n_val=32, n_test=16, seed=0)
    tokenizer = AutoTokenizer.from_pretrained(assets.model_dir)
    train_rows = rows_of(tokenizer, assets.train_parquet, 256)
    held_out = rows_of(tokenizer, assets.val_parquet, args.eval_rows)
    results = {}
    for ref_steps in args.ref_steps:
        model = AutoModelForCausalLM.from_pretrained(assets.model_dir, dtype=torch.float32)
        train(model, train_rows, {"name": "sft"}, ref_steps, batch=args.batch)
        ref_logits = target_logits(model, held_out)
        train(model, train_rows, {"name": "dft"}, args.drift_steps, batch=args.batch, seed=1)
        results[f"reference after {ref_steps} SFT steps"] = measure(ref_logits, target_logits(model, held_out))
    for name, rows in results.items():
        print(f"\n{name}, policy after {args.drift_steps} more DFT steps; {args.eval_rows} held-out rows")
        print("| K | exact KL | KL_K | (KL - KL_K) / KL | reference mass in top-K |\n|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['k']} | {r['exact_kl']:.5f} | {r['kl_k']:.5f} | {r['rel_gap']:.2%} | {r['ref_top_mass']:.4f} |"
            )
    (args.out / "topk_kl.json").write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
