"""The CPU quickstart: the whole DFT pipeline at tiny scale, through the same code a GPU cluster runs.

    python -m dft quickstart            # Table 1: Base, SFT, DFT
    python -m dft quickstart table3     # Table 3: also iw-SFT, RFT, DPO, PPO, GRPO (dft/cli/quickstart_table3.py)

1. builds a tiny Qwen2-architecture model and math word problems, by code (``dft.models.tiny``);
2. makes the Base model as the paper's bases are made, by pretraining: a short cross-entropy run on a split
   of its own (DFT reweights tokens by the model's own probability, so like the paper it needs a base that
   already puts some mass on the right tokens; from random weights every p is ~1/vocab);
3. fine-tunes Base with SFT and with DFT on another split, with ``dft train`` through verl's engine on 2
   processes (torchrun, FSDP2, gloo);
4. evaluates Base, SFT and DFT on the held-out split (greedy decoding, math-verify grading);
5. prints a table in the layout of the paper's Table 1 and writes ``results.json`` and per-response files.

Run it again and finished stages are reused: a trained checkpoint is not retrained, an interrupted training
run resumes from its last checkpoint. Each run folder records the command that made it (``fingerprint.json``);
run with other options, the same folder is refused rather than reused or resumed.
"""

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from tqdm import tqdm

from dft.data.problems import BadRow, read_jsonl, read_problems
from dft.eval.backends import HFBackend, SamplingParams
from dft.eval.grading import Grader
from dft.eval.runner import git_commit, run_benchmark, summarize
from dft.models.generation import ModelFormat
from dft.models.prompts import build_prompt
from dft.models.tiny import build_tiny_assets, write_sft_parquet

ROWS = ("Base", "SFT", "DFT")


def train_overrides(model: Path, data: Path, val: Path, loss: str, lr: float, run_dir: Path, steps: int, every: int):
    """Hydra overrides for one tiny-cpu run of dft train: a checkpoint every ``every`` steps (so an interrupted run
    resumes) and at the end, the final one with HF weights for evaluation."""
    return [
        "preset=tiny-cpu",
        f"loss.name={loss}",
        f"optim.lr={lr}",
        f"model.path={model}",
        f"data.train_files={data}",
        f"data.val_files={val}",
        "trainer.total_epochs=100",
        f"trainer.total_training_steps={steps}",
        f"trainer.save_freq={every}",
        "trainer.max_ckpt_to_keep=1",
        f"trainer.default_local_dir={run_dir / 'ckpt'}",
        "trainer.logger=[console,file]",
        "checkpoint.save_contents=[model,optimizer,extra,hf_model]",
    ]


def _logged_steps(log_path: Path) -> dict:
    if not log_path.exists():
        return {}
    rows = read_jsonl(log_path).rows  # a line being written now is a BadRow, read at the next poll
    return {row["step"]: row["data"] for row in rows if not isinstance(row, BadRow) and "train/loss" in row["data"]}


def _wait_with_progress(proc: subprocess.Popen, log_path: Path, steps: int, desc: str) -> None:
    with tqdm(total=steps, desc=desc, unit="step") as bar:
        while proc.poll() is None:
            time.sleep(1.0)
            bar.n = len(_logged_steps(log_path))
            bar.refresh()


def claim_run_dir(run_dir: Path, command: list[str]) -> None:
    """Record in ``run_dir`` the ``key=value`` command that makes its run (``dft.eval.fingerprint.claim``, as an
    evaluation records its own); refuse a folder whose run another command made, since reusing a finished run or
    resuming an unfinished one would mix two runs. The folder's own path is recorded as ``{run_dir}``, so a moved
    run folder is still its run."""
    from dft.eval.fingerprint import claim

    record = dict(str(arg).replace(str(run_dir), "{run_dir}").split("=", 1) for arg in command)
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        claim(run_dir, record, key="--out")
    except ValueError as err:
        raise SystemExit(str(err)) from None


def train(overrides: list[str], run_dir: Path, steps: int, desc: str) -> Path:
    """Run dft train (or reuse a finished run of the same overrides); return the final checkpoint's HF directory."""
    claim_run_dir(run_dir, overrides)
    hf_dir = run_dir / "ckpt" / f"global_step_{steps}" / "huggingface"
    if (hf_dir / "model.safetensors").exists():
        return hf_dir
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "dft", "train"]
    cmd += overrides
    log_path = run_dir / "metrics.jsonl"
    env = dict(os.environ, VERL_FILE_LOGGER_PATH=str(log_path), PYTHONUNBUFFERED="1")
    with open(run_dir / "train.log", "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        _wait_with_progress(proc, log_path, steps, desc)
    if proc.returncode != 0 or not (hf_dir / "model.safetensors").exists():
        tail = (run_dir / "train.log").read_text()[-3000:]
        raise RuntimeError(f"{desc} failed (exit {proc.returncode}); log: {run_dir / 'train.log'}\n{tail}")
    return hf_dir


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


def format_table(results: dict, benchmark: str) -> str:
    """Rows Base/SFT/DFT, one benchmark column plus Avg, as the paper's Table 1 lays them out; best in bold."""
    best = max(r["avg@1"] for r in results.values())
    lines = [f"| Model | {benchmark} | Avg. |", "|---|---|---|"]
    for row, r in results.items():
        cell = f"{100 * r['avg@1']:.1f}"
        cell = f"**{cell}**" if r["avg@1"] == best else cell
        lines.append(f"| {row} | {cell} | {cell} |")
    return "\n".join(lines)


def split_pretrain_finetune(assets, n_pretrain: int) -> tuple[Path, Path]:
    """Disjoint parquet files for pretraining the Base model and for fine-tuning it."""
    pretrain, finetune = assets.root / "data" / "pretrain.parquet", assets.root / "data" / "finetune.parquet"
    if not (pretrain.exists() and finetune.exists()):
        write_sft_parquet(assets.train_records[:n_pretrain], pretrain)
        write_sft_parquet(assets.train_records[n_pretrain:], finetune)
    return pretrain, finetune


def build_assets(out: Path, n_train: int, n_test: int):
    """The tiny model and problems in ``out/tiny``, for these counts only (the splits and runs made from them stay)."""
    claim_run_dir(out / "tiny", [f"--n-train={n_train}", f"--n-test={n_test}"])
    return build_tiny_assets(out / "tiny", n_train=n_train, n_val=64, n_test=n_test, seed=0)


PRETRAIN_LR = 3e-3


def train_all(assets, out: Path, pretrain_steps: int, steps: int, lr: float) -> tuple[dict, dict]:
    """Pretrain Base with cross-entropy, then fine-tune it with SFT and with DFT; return models and overrides."""
    pretrain, finetune = split_pretrain_finetune(assets, n_pretrain=len(assets.train_records) // 2)
    val, base_dir = assets.val_parquet, out / "base"
    base = train_overrides(assets.model_dir, pretrain, val, "sft", PRETRAIN_LR, base_dir, pretrain_steps, 50)
    overrides = {"Base": base}
    models = {"Base": train(base, base_dir, pretrain_steps, "pretrain Base (CE)")}
    for row in ("SFT", "DFT"):
        run_dir = out / row.lower()
        overrides[row] = train_overrides(models["Base"], finetune, val, row.lower(), lr, run_dir, steps, 50)
        models[row] = train(overrides[row], run_dir, steps, f"fine-tune {row}")
    return models, overrides


def run(out: Path, pretrain_steps: int, steps: int, lr: float, n_train: int, n_test: int, max_new_tokens: int) -> dict:
    """The whole quickstart; returns what it writes to ``out/results.json``."""
    start = time.time()
    assets = build_assets(out, n_train, n_test)
    models, overrides = train_all(assets, out, pretrain_steps, steps, lr)
    params = replace(GREEDY, max_new_tokens=max_new_tokens)
    results = evaluate_rows(models, assets.test_jsonl, out, params)
    logs = {row: _logged_steps(out / row.lower() / "metrics.jsonl") for row in ROWS}
    summary = {
        "commit": git_commit(),
        "model": "tiny Qwen2 (dft.models.tiny, seed 0)",
        "benchmark": {"name": "tiny-math held-out", "n": len(assets.test_records)},
        "sampling": {"decoding": "greedy", **asdict(params)},
        "train": {"overrides": overrides, "final_metrics": {row: log[max(log)] for row, log in logs.items() if log}},
        "results": {row: results[row] for row in ROWS},
        "wall_s": round(time.time() - start, 1),
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
