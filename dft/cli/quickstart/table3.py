"""Table 3 of the paper at toy scale on a CPU: ``python -m dft quickstart table3``.

The offline and online settings of sec. 4.2 on the quickstart's tiny model, through the code a GPU cluster runs:

1. Base, SFT and DFT are the Table 1 quickstart's runs (reused from the same output folder); iw-SFT trains on
   the same fine-tuning data with reference log-probs scored by Base (``dft.train.ref_scoring``).
2. Offline: rejection sampling from Base (``dft.rl.rft``: 4 samples per fine-tuning problem at temperature
   1.0, verified by math-verify); SFT (the "RFT" row), iw-SFT and DFT on the accepted samples; DPO on the
   (correct, incorrect) pairs, scored by Base.
3. Online: PPO (GAE, a critic) and GRPO (8 responses per prompt) through verl's own ``main_ppo``
   (``scripts/train_rl.sh rl_setting=tiny-cpu``: 2 training processes, the Hugging Face rollout) on the same
   problems, rewarded by math-verify (``dft.rl.reward``).
4. Every row is evaluated as in Table 1 (greedy, math-verify), printed in the paper's row order and written,
   with the commands' settings and the RFT report, to ``results_table3.json``.

A stage whose output exists is reused and an interrupted one resumes (training from its last checkpoint,
sampling and scoring from their kill-safe files), so the command can be run again after a kill. The ``table3``
folder records the options that made it, as each run folder records its command (``fingerprint.json``); other options
are refused rather than mixed in (``--rl-steps`` may grow: PPO and GRPO go on from their last checkpoints).
"""

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from dft.cli.quickstart import recipe as qs  # replaced by the Table 3 recipe (helper branch)
from dft.core import paths
from dft.core.io import write_json_atomic
from dft.eval.runner import git_commit
from dft.models.checkpoints import resolve_model

REPO = paths.REPO
ROWS = ("Base", "SFT", "iw-SFT", "DFT", "DPO (offline)", "RFT (offline)", "PPO (online)", "GRPO (online)",
        "iw-SFT (offline)", "DFT (offline)")  # fmt: skip
SECTIONS = {"Base": "", "SFT": "SFT", "DPO (offline)": "Offline RL", "PPO (online)": "Online RL",
            "iw-SFT (offline)": "Offline (rejection-sampled data)"}  # fmt: skip
NOTE = "The numbers show the pipeline works; at this scale they say nothing about the paper's claims."


@dataclass(frozen=True)
class Table3Options:
    out: Path
    pretrain_steps: int = 150
    steps: int = 100
    lr: float = 1e-3
    n_train: int = 4000
    n_test: int = 200
    max_new_tokens: int = 64
    rft_problems: int = 500
    offline_steps: int = 30
    dpo_lr: float = 1e-4
    rl_steps: int = 6
    rl_lr: float = 1e-4
    base: Path | None = None  # an existing Base model instead of pretraining one


def run_logged(cmd: list[str], log: Path, desc: str, env: dict | None = None) -> None:
    """Run a stage's command with its output in ``log``; a failure raises with the log's tail."""
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"{desc} ...", flush=True)
    start = time.time()
    with open(log, "a") as out:
        code = subprocess.run(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env).returncode
    if code != 0:
        raise RuntimeError(f"{desc} failed (exit {code}); log: {log}\n{log.read_text()[-3000:]}")
    print(f"{desc}: {time.time() - start:.0f} s", flush=True)


def torchrun(command: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "dft", command]


def score(model: Path, data: Path, output: Path) -> Path:
    """``data`` with the reference log-probs of ``model`` (dft.train.ref_scoring on 2 processes)."""
    if not output.exists():
        args = ["preset=tiny-cpu", f"model.path={model}", f"data.train_files={data}", f"ref.output={output}"]
        run_logged(torchrun("ref_logprobs") + args, output.with_suffix(".log"), f"score {data.name}")
    return output


def rejection_sample(base: Path, problems: Path, out: Path, opts: Table3Options) -> dict:
    """4 samples per problem from Base at temperature 1.0, verified (dft.rl.rft): rft.parquet, pairs.parquet."""
    if not (out / "report.json").exists():
        args = [f"model={base}", f"input={problems}", f"out={out}", f"limit={opts.rft_problems}", "backend=hf",
                f"sampling.max_new_tokens={opts.max_new_tokens}", "hf.batch_size=64", "grading.workers=2"]  # fmt: skip
        run_logged([sys.executable, "-m", "dft", "data", "rft", *args], out / "rft.log", "rejection sampling (Base)")
    return json.loads((out / "report.json").read_text())


OFFLINE_BATCH = 16  # rejection-sampled data is a few hundred rows at this scale


def train_offline(model: Path, data: Path, run_dir: Path, loss: str, lr: float, steps: int, *extra: str) -> Path:
    """dft train on scored or sampled data (no validation split: the pairs have none); the final HF weights."""
    overrides = qs.train_overrides(model, data, data, loss, lr, run_dir, steps, max(steps // 2, 1))
    overrides = [o for o in overrides if not o.startswith("data.val_files=")] + ["data.val_files=null", *extra]
    return qs.train(overrides, run_dir, steps, f"train {run_dir.name}")


RL_VAL = 16  # verl's trainer wants a validation file; the rows after the training prompts


def rl_data(problems_parquet: Path, out: Path, n: int) -> Path:
    """The fine-tuning problems as verl's RL parquet (dft.rl.rl_data), the same problems RFT sampled."""
    if not (out / "val.parquet").exists():
        args = ["--out", str(out), "--input", str(problems_parquet), "--n", str(n), "--selection", "first",
                "--val-size", str(RL_VAL)]  # fmt: skip
        run_logged([sys.executable, "-m", "dft", "data", "rl", *args], out / "prep.log", "RL prompts")
    return out


HF_CHECKPOINT = "[model,optimizer,extra,hf_model]"  # with Hugging Face weights, for the evaluation
# responses per prompt: the tiny Base earns the reward with ~7% of its samples at temperature 1 (0-30% by prompt), so
# with the paper's 4 a step of 16 prompts has no reward at all (every advantage 0, nothing learned) in ~1 run of 200;
# with 8, in ~1 of 40 000 (per-prompt rates measured on the first step's prompts, 160 samples each)
RESPONSES = {"grpo": 8, "ppo": 1}


def train_online(algo: str, base: Path, data: Path, run_dir: Path, steps: int, lr: float, *extra: str) -> Path:
    """PPO or GRPO through ``scripts/train_rl.sh rl_setting=tiny-cpu``; resumes from the run's last checkpoint.

    Saves every step (actor with Hugging Face weights, which dft eval finds in the run folder), logs metrics to
    ``metrics.jsonl`` and every rollout, with its reward, to ``rollouts/<step>.jsonl``.
    """
    inputs = {"ALGO": algo, "MODEL": str(base), "DATA_DIR": str(data)}
    args = ["rl_setting=tiny-cpu", "trainer.save_freq=1", f"trainer.default_local_dir={run_dir / 'ckpt'}",
            f"trainer.rollout_data_dir={run_dir / 'rollouts'}", "trainer.logger=[console,file]",
            "trainer.max_actor_ckpt_to_keep=1", "trainer.max_critic_ckpt_to_keep=1",
            f"actor_rollout_ref.actor.optim.lr={lr}", f"actor_rollout_ref.rollout.n={RESPONSES[algo]}",
            f"actor_rollout_ref.actor.checkpoint.save_contents={HF_CHECKPOINT}", *extra]  # fmt: skip
    # the step count is left out of the record: a run may go on to more steps, resuming from its last checkpoint
    qs.claim_run_dir(run_dir, [f"{k}={v}" for k, v in inputs.items()] + args)
    final = run_dir / "ckpt" / f"global_step_{steps}"
    if not final.is_dir():
        env = dict(os.environ, **inputs, RAY_ADDRESS="", VERL_FILE_LOGGER_PATH=str(run_dir / "metrics.jsonl"),
                   PYTHONUNBUFFERED="1")  # fmt: skip
        script = ["bash", str(REPO / "scripts" / "train_rl.sh"), *args, f"trainer.total_training_steps={steps}"]
        run_logged(script, run_dir / "train.log", f"{algo} (online)", env=env)
    return Path(resolve_model(str(run_dir / "ckpt")))


def base_and_sft_rows(assets, opts: Table3Options) -> tuple[dict, dict, Path]:
    """Base, SFT and DFT of Table 1 (or the given Base with SFT and DFT on it); iw-SFT beside them."""
    out = opts.out
    pretrain, finetune = qs.split_pretrain_finetune(assets, n_pretrain=len(assets.train_records) // 2)
    if opts.base is None:
        models, overrides = qs.train_all(assets, out, opts.pretrain_steps, opts.steps, opts.lr)
    else:
        models, overrides = {"Base": opts.base}, {"Base": [f"given: {opts.base}"]}
        for row in ("SFT", "DFT"):
            run_dir = out / row.lower()
            overrides[row] = qs.train_overrides(opts.base, finetune, assets.val_parquet, row.lower(), opts.lr,
                                                run_dir, opts.steps, 50)  # fmt: skip
            models[row] = qs.train(overrides[row], run_dir, opts.steps, f"fine-tune {row}")
    scored = score(models["Base"], finetune, out / "table3" / "finetune.ref.parquet")
    overrides["iw-SFT"] = [f"data.train_files={scored}", "loss.name=iw_sft"]
    models["iw-SFT"] = train_offline(models["Base"], scored, out / "iw_sft", "iw_sft", opts.lr, opts.steps)
    return models, overrides, finetune


def offline_rows(base: Path, finetune: Path, opts: Table3Options) -> tuple[dict, dict]:
    """RFT data from Base, then RFT (SFT), iw-SFT and DFT on it and DPO on its pairs."""
    root = opts.out / "table3"
    report = rejection_sample(base, finetune, root / "rft", opts)
    rft, pairs = root / "rft" / "rft.parquet", root / "rft" / "pairs.parquet"
    rft_scored = score(base, rft, root / "rft" / "rft.ref.parquet")
    pairs_scored = score(base, pairs, root / "rft" / "pairs.ref.parquet")
    steps, lr, batch = opts.offline_steps, opts.lr, f"data.train_batch_size={OFFLINE_BATCH}"
    models = {
        "RFT (offline)": train_offline(base, rft, root / "rft_sft", "sft", lr, steps, batch),
        "iw-SFT (offline)": train_offline(base, rft_scored, root / "rft_iw_sft", "iw_sft", lr, steps, batch),
        "DFT (offline)": train_offline(base, rft, root / "rft_dft", "dft", lr, steps, batch),
        "DPO (offline)": train_offline(
            base, pairs_scored, root / "dpo", "dpo", opts.dpo_lr, steps, batch, "setting=dpo"
        ),
    }
    return models, report


def online_rows(base: Path, finetune: Path, opts: Table3Options) -> dict:
    root = opts.out / "table3"
    data = rl_data(finetune, root / "rl", opts.rft_problems)
    return {f"{algo.upper()} (online)": train_online(algo, base, data, root / algo, opts.rl_steps, opts.rl_lr)
            for algo in ("ppo", "grpo")}  # fmt: skip


def format_table(results: dict, benchmark: str) -> str:
    """The paper's Table 3 layout: its rows in its order, grouped by setting; best in bold."""
    best = max(r["avg@1"] for r in results.values())
    lines = [f"| Model | {benchmark} | Avg. |", "|---|---|---|"]
    for row in ROWS:
        if SECTIONS.get(row):
            lines.append(f"| *{SECTIONS[row]}* | | |")
        cell = f"{100 * results[row]['avg@1']:.1f}"
        cell = f"**{cell}**" if results[row]["avg@1"] == best else cell
        lines.append(f"| {row} | {cell} | {cell} |")
    return "\n".join(lines)


def run(opts: Table3Options) -> dict:
    """The whole Table 3 quickstart; returns what it writes to ``out/results_table3.json``."""
    start = time.time()
    # the data's counts are recorded with the data; the RL runs record their own commands
    recorded = {k: v for k, v in asdict(opts).items() if k not in ("out", "n_train", "n_test", "rl_steps")}
    qs.claim_run_dir(opts.out / "table3", [f"--{k.replace('_', '-')}={v}" for k, v in recorded.items()])
    assets = qs.build_assets(opts.out, opts.n_train, opts.n_test)
    models, overrides, finetune = base_and_sft_rows(assets, opts)
    offline, rft_report = offline_rows(models["Base"], finetune, opts)
    models.update(offline)
    models.update(online_rows(models["Base"], finetune, opts))
    params = replace(qs.GREEDY, max_new_tokens=opts.max_new_tokens)
    # Table 1's evaluations of Base, SFT and DFT (same folder, same decoding) are reused, not redone
    results = qs.evaluate_rows({row: models[row] for row in ROWS}, assets.test_jsonl, opts.out, params)
    summary = {
        "commit": git_commit(),
        "model": "tiny Qwen2 (dft.models.tiny, seed 0)" if opts.base is None else str(opts.base),
        "benchmark": {"name": "tiny-math held-out", "n": len(assets.test_records)},
        "sampling": {"decoding": "greedy", **asdict(params)},
        "options": {k: str(v) for k, v in asdict(opts).items()},
        "models": {row: str(models[row]) for row in ROWS},
        "train": {"overrides": {row: [str(o) for o in v] for row, v in overrides.items()}},
        "rft": rft_report,
        "results": {row: results[row] for row in ROWS},
        "note": NOTE,
        "wall_s": round(time.time() - start, 1),
    }
    write_json_atomic(opts.out / "results_table3.json", summary)
    return summary


def add_arguments(parser) -> None:
    """Table 3's own options (the Table 1 options set Base, SFT and DFT)."""
    defaults = Table3Options(out=Path())
    parser.add_argument("--rft-problems", type=int, default=defaults.rft_problems,
                        help="problems for rejection sampling and RL")  # fmt: skip
    parser.add_argument("--offline-steps", type=int, default=defaults.offline_steps,
                        help="steps of each offline run (RFT, DPO)")  # fmt: skip
    parser.add_argument("--dpo-lr", type=float, default=defaults.dpo_lr, help="DPO learning rate")
    parser.add_argument("--rl-steps", type=int, default=defaults.rl_steps, help="PPO and GRPO steps (16 prompts each)")
    parser.add_argument("--rl-lr", type=float, default=defaults.rl_lr, help="PPO and GRPO actor learning rate")
    parser.add_argument("--base", type=Path, default=None, help="use this Base model instead of pretraining one")


def main(args) -> None:
    opts = Table3Options(
        out=args.out.resolve(), pretrain_steps=args.pretrain_steps, steps=args.steps, lr=args.lr,
        n_train=args.n_train, n_test=args.n_test, max_new_tokens=args.max_new_tokens, rft_problems=args.rft_problems,
        offline_steps=args.offline_steps, dpo_lr=args.dpo_lr, rl_steps=args.rl_steps, rl_lr=args.rl_lr,
        base=args.base.resolve() if args.base else None,
    )  # fmt: skip
    summary = run(opts)
    print()
    print(format_table(summary["results"], f"tiny-math ({summary['benchmark']['n']})"))
    print(f"\n{NOTE}")
    print(f"results: {args.out / 'results_table3.json'}   wall time: {summary['wall_s']:.0f} s")
