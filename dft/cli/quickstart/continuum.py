"""The capability continuum at toy scale, on a CPU: does the prior's strength predict whether DFT beats SFT?

    python -m dft quickstart continuum --out runs/continuum

1. the tiny model and problems (``dft.models.tiny``); one split pretrains, another fine-tunes, a third is held out;
2. starting models of several strengths: the tiny model pretrained with cross-entropy for ``--strengths`` steps
   (snapshots of one run), so its prior on the fine-tuning data goes from weak to strong;
3. ``python -m dft diagnose`` on each starting model and the fine-tuning data (the real command: verl's engine,
   one process), giving ``mean_target_prob`` and the verdict;
4. each start fine-tuned with SFT, DFT and ``prob_power`` at two alphas, ``--seeds`` seeds each (the seed orders
   the batches). At this scale the fine-tuning is a one-process PyTorch loop over the same token losses
   (``-log p``, ``-sg(p) log p``, ``dft.train.losses.beyond.prob_power_values``), not verl's engine: 24 runs of
   ``dft train`` would take over half an hour of two cores; the recipe (``recipes/continuum/run.sh``, at either
   scale) trains with ``dft train``;
5. every model evaluated on the held-out problems (greedy, math-verify), and ``continuum.md``,
   ``continuum.json`` and ``continuum.png`` (DFT - SFT accuracy against ``mean_target_prob``) written by
   :mod:`dft.report.continuum`.

Finished pieces (snapshots, diagnoses, fine-tuned models, evaluations) are reused when run again.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from tqdm import tqdm

from dft.data.problems import read_problems
from dft.eval.backends import HFBackend, SamplingParams
from dft.eval.grading import Grader
from dft.eval.runner import run_benchmark, summarize
from dft.models.generation import ModelFormat
from dft.models.prompts import build_prompt
from dft.models.tiny import build_tiny_assets, encode_chat, write_sft_parquet
from dft.report.continuum import LOSSES, write_continuum

PRETRAIN_LR, FINETUNE_LR, BATCH = 3e-3, 1e-3, 32


def batch(encoded: list[tuple[list[int], int]], pad_id: int):
    """(input_ids, target mask, attention mask), right-padded; the mask covers the assistant turn."""
    width = max(len(ids) for ids, _ in encoded)
    input_ids = torch.full((len(encoded), width), pad_id)
    targets = torch.zeros((len(encoded), width), dtype=torch.bool)
    attention = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, (ids, prompt_len) in enumerate(encoded):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        targets[row, prompt_len : len(ids)] = True
        attention[row, : len(ids)] = 1
    return input_ids, targets, attention


def token_loss(log_p: torch.Tensor, loss: str) -> torch.Tensor:
    """Per-token loss of ``loss`` (``sft``, ``dft`` or ``prob_power@ALPHA``) from the targets' log p."""
    from dft.train.losses.beyond import prob_power_values

    if loss == "sft":
        return -log_p
    if loss == "dft":
        return -log_p.exp().detach() * log_p
    return prob_power_values(log_p, float(loss.split("@")[1]))


def fit(model, tokenizer, encoded, loss: str, steps: int, lr: float, seed: int, snapshots: dict | None = None):
    """``steps`` AdamW steps of token-mean ``loss`` on random batches; ``snapshots``: {step: folder} saved on the
    way (the starting models of several strengths, from one run)."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.01)
    model.train()
    for step in range(1, steps + 1):
        picks = torch.randint(len(encoded), (BATCH,), generator=generator).tolist()
        input_ids, targets, attention = batch([encoded[i] for i in picks], tokenizer.pad_token_id)
        logits = model(input_ids=input_ids, attention_mask=attention).logits[:, :-1].float()
        log_p = torch.log_softmax(logits, -1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
        mask = targets[:, 1:]
        value = token_loss(log_p[mask], loss).mean()
        optimizer.zero_grad()
        value.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if snapshots and step in snapshots:
            save(model, tokenizer, snapshots[step])
    return model.eval()


def save(model, tokenizer, out: Path) -> Path:
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def load(model_dir: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), AutoTokenizer.from_pretrained(
        model_dir
    )


def starting_models(assets, pretrain: list[dict], strengths: list[int], out: Path) -> dict[int, Path]:
    """The tiny model after each number of pretraining steps in ``strengths``: snapshots of one cross-entropy run
    (seeded, so a run made for the missing ones retraces the same trajectory and adds only them)."""
    folders = {s: out / f"start_{s}" for s in strengths}
    missing = {s: f for s, f in folders.items() if not (f / "model.safetensors").is_file()}
    if missing:
        model, tokenizer = load(assets.model_dir)
        encoded = [encode_chat(tokenizer, r) for r in pretrain]
        fit(model, tokenizer, encoded, "sft", max(missing), PRETRAIN_LR, seed=0, snapshots=missing)
    return folders


def diagnose(start: Path, data: Path, out: Path) -> dict:
    """``python -m dft diagnose`` on a starting model and the fine-tuning data (reused when its report exists)."""
    report = out / "report.json"
    if not report.is_file():
        cmd = [sys.executable, "-m", "dft", "diagnose", "preset=tiny-cpu", f"model.path={start}",
               f"data.train_files={data}", f"out={out}", "limit=512"]  # fmt: skip
        with open(out.parent / f"{out.name}.log", "w") as log:
            subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
    return json.loads(report.read_text())


def finetune(start: Path, records: list[dict], loss: str, seed: int, steps: int, out: Path) -> Path:
    if (out / "model.safetensors").is_file():
        return out
    model, tokenizer = load(start)
    torch.manual_seed(seed)
    encoded = [encode_chat(tokenizer, r) for r in records]
    return save(fit(model, tokenizer, encoded, loss, steps, FINETUNE_LR, seed), tokenizer, out)


def run(out: Path, strengths: list[int], seeds: int, steps: int, n_train: int, n_test: int) -> dict:
    """The whole toy continuum; returns what ``continuum.json`` holds."""
    start_time = time.time()
    torch.set_num_threads(1)  # a model this small runs fastest on one thread, and shares the machine best
    assets = build_tiny_assets(out / "tiny", n_train=n_train, n_val=16, n_test=n_test, seed=0)
    half = len(assets.train_records) // 2
    pretrain, records = assets.train_records[:half], assets.train_records[half:]
    data = out / "finetune.parquet"
    if not data.is_file():
        write_sft_parquet(records, data)
    starts = starting_models(assets, pretrain, strengths, out)
    models, diagnoses = {}, {}
    for strength, start in starts.items():
        diagnoses[strength] = diagnose(start, data, out / f"diagnose_{strength}")
        models[(strength, "base", 0)] = start
        for loss in LOSSES:
            for seed in range(seeds):
                folder = out / f"ft_{strength}_{loss.replace('@', '')}_s{seed}"
                models[(strength, loss, seed)] = finetune(start, records, loss, seed, steps, folder)
    named = {f"{s}|{loss}|{seed}": path for (s, loss, seed), path in models.items()}
    results = evaluate_rows(named, assets.test_jsonl, out / "eval", replace(GREEDY, max_new_tokens=64))
    accuracy = {key: r["avg@1"] for key, r in results.items()}
    config = {"strengths": strengths, "seeds": seeds, "steps": steps, "lr": FINETUNE_LR, "batch": BATCH,
              "n_finetune": len(records), "n_test": len(assets.test_records)}  # fmt: skip
    return write_continuum(out, diagnoses, accuracy, config, round(time.time() - start_time, 1))


GREEDY = SamplingParams(n=1, temperature=0.0, top_p=1.0, max_new_tokens=64, seed=0)


def evaluate_rows(models: dict, test_jsonl: Path, out_dir: Path, params: SamplingParams) -> dict:
    """Each model on the held-out problems through the evaluation harness (HF backend, math-verify grading).

    Responses go to ``eval_<row>.jsonl``; like every harness run, an interrupted evaluation resumes.
    """
    problems = read_problems(test_jsonl)
    results = {}
    with Grader(workers=2) as grader, tqdm(total=len(models) * len(problems), desc="evaluate", unit="problem") as bar:
        for row, model_dir in models.items():
            fmt = ModelFormat.load(str(model_dir))
            prompts = fmt.encode_all(problems, lambda p, tok=fmt.tokenizer: build_prompt("chat-cot", p.problem, tok),
                                     params.max_new_tokens, f"test file {test_jsonl}")  # fmt: skip
            backend = HFBackend(str(model_dir), batch_size=32)
            rows = run_benchmark(prompts, out_dir / f"eval_{slug(row)}.jsonl", backend.generate, params,
                                 fmt.stops, grader.grade_many, chunk_size=64, on_rows=bar.update)  # fmt: skip
            results[row] = summarize(prompts, rows, params, grader.equivalent)
    return results


def slug(row: str) -> str:
    """A table row as a file name: ``DPO (offline)`` -> ``dpo_offline``."""
    return "_".join(row.lower().replace("(", "").replace(")", "").split())


def add_arguments(group) -> None:
    group.add_argument("--strengths", type=int, nargs="+", default=[10, 25, 50, 150, 400, 1000],
                       help="continuum: pretraining steps of each starting model (weak to strong)")  # fmt: skip
    group.add_argument("--seeds", type=int, default=2, help="continuum: fine-tuning seeds per loss")


def main(args) -> dict:
    out = args.out.resolve() if args.out != Path("runs/quickstart") else Path("runs/continuum").resolve()
    summary = run(out, sorted(args.strengths), args.seeds, args.steps, args.n_train, args.n_test)
    print((out / "continuum.md").read_text())
    print(f"wall time: {summary['wall_s']:.0f} s; {out / 'continuum.png'}")
    return summary
