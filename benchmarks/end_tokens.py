"""Do fine-tuned models stop? DFT with and without ``loss.full_weight_tokens`` on the tiny model, held-out evaluation.

Both runs start from the same random tiny model and see the same batches (benchmarks/tiny_train.py, this repo's
``dft`` loss, ``full_weight_tokens`` = the tiny chat template's end of turn, ``<|im_end|>``, its eos). On held-out
problems (the validation rows, never trained on): the share of greedy responses that emit the end token within
``--budget`` new tokens, their mean length, and the mean probability of the end token where the reference
answer ends (teacher-forced).

    python benchmarks/end_tokens.py --out /tmp/end_tokens [--steps 60 --batch 16 --budget 96 --base-steps 0]

``--base-steps N`` first trains the start model with SFT for N steps on the responses cut before their end token:
a "base" that writes answers but was never taught to stop (the situation of yongliang-wu/DFT issue 10).
"""

import argparse
import json
from pathlib import Path

import pandas as pd
import torch
from tiny_train import encode, flat_log_probs, train
from transformers import AutoModelForCausalLM, AutoTokenizer

from dft.models.tiny import build_tiny_assets
from dft.train.full_weight import token_id


@torch.no_grad()
def stop_share(model, tokenizer, messages: list[list[dict]], budget: int, end: int) -> dict:
    """Greedy responses to the prompts: the share that emit ``end`` within ``budget`` tokens, their mean length."""
    tokenizer.padding_side = "left"
    prompts = [tokenizer.apply_chat_template(m[:1], add_generation_prompt=True, tokenize=False) for m in messages]
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    out = model.generate(**batch, max_new_tokens=budget, do_sample=False, eos_token_id=end,
                         pad_token_id=tokenizer.pad_token_id)[:, batch["input_ids"].shape[1] :]  # fmt: skip
    ended = [(row == end).nonzero() for row in out]
    lengths = [int(e[0]) + 1 if len(e) else budget for e in ended]
    return {"stopped": sum(len(e) > 0 for e in ended) / len(ended), "mean_length": sum(lengths) / len(lengths)}


@torch.no_grad()
def end_probability(model, rows, end: int) -> float:
    """Mean probability of ``end`` at the position where each reference response emits it (teacher-forced)."""
    log_probs, _ = flat_log_probs(model, rows)
    targets = torch.roll(torch.cat([torch.tensor(ids) for ids, _ in rows]), -1)
    mask = torch.cat([torch.tensor([0] * p + [1] * (len(ids) - p)) for ids, p in rows])
    at_end = torch.roll(mask, -1).bool() & (targets == end)
    return log_probs[at_end].exp().mean().item()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--budget", type=int, default=96)
    parser.add_argument("--base-steps", type=int, default=0)
    args = parser.parse_args(argv)
    assets = build_tiny_assets(args.out / "tiny", n_train=256, n_val=64, n_test=16, seed=0)
    tokenizer = AutoTokenizer.from_pretrained(assets.model_dir)
    end = token_id(tokenizer, "end_of_turn")
    train_rows = [encode(tokenizer, list(m)) for m in pd.read_parquet(assets.train_parquet)["messages"]]
    held_out = [[dict(x) for x in m] for m in pd.read_parquet(assets.val_parquet)["messages"]]
    held_rows = [encode(tokenizer, m) for m in held_out]
    reference_lengths = [len(ids) - p for ids, p in held_rows]
    arms = {
        "dft": {"name": "dft"},
        "dft + full_weight_tokens=[end_of_turn]": {"name": "dft", "full_weight_tokens": [end]},
    }
    start = assets.model_dir
    if args.base_steps:
        torch.manual_seed(0)
        base = AutoModelForCausalLM.from_pretrained(assets.model_dir, dtype=torch.float32)
        cut = [(ids[: len(ids) - ids[::-1].index(end) - 1], p) for ids, p in train_rows]  # responses without the end
        train(base, cut, {"name": "sft"}, args.base_steps, batch=args.batch, seed=2)
        start = args.out / "base"
        base.save_pretrained(start)
        results_base = stop_share(base, tokenizer, held_out, args.budget, end)
        print(
            f"base after {args.base_steps} SFT steps without end tokens: {results_base}, "
            f"p(end) {end_probability(base, held_rows, end):.4f}"
        )
    results = {}
    for label, loss in arms.items():
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(start, dtype=torch.float32)
        nll = train(model, train_rows, loss, args.steps, batch=args.batch)
        results[label] = {**stop_share(model, tokenizer, held_out, args.budget, end),
                          "p_end": end_probability(model, held_rows, end), "train_nll_last": nll[-1]}  # fmt: skip
    print(
        f"tiny model, {args.steps} DFT steps of {args.batch} rows; {len(held_out)} held-out problems, greedy, "
        f"budget {args.budget} tokens (reference responses: {min(reference_lengths)}-{max(reference_lengths)})"
    )
    print("| run | ended before the budget | mean length | p(end) at the reference end | train nll |")
    print("|---|---|---|---|---|")
    for label, r in results.items():
        print(
            f"| {label} | {r['stopped']:.0%} | {r['mean_length']:.1f} | {r['p_end']:.3f} | {r['train_nll_last']:.3f} |"
        )
    (args.out / "end_tokens.json").write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
