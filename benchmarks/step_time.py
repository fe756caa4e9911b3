"""DFT/SFT training-step time and peak memory through verl's real engine, on the tiny model, 2 CPU processes.

What: ``torchrun --nproc_per_node=2`` runs this file as a worker: it composes the same Hydra config ``dft train``
uses (``configs/dft_trainer.yaml`` + ``preset=tiny-cpu``), builds ``dft.train.trainer``'s SPMD trainer (verl's
``SFTTrainer`` with our loss), wraps ``training_client.train_batch`` with a timer and calls verl's ``fit``.

Why this way: verl's SFT trainer does not log step wall time (it uses it only for ``train/mfu``), and the file
logger writes no timestamps. ``train_batch`` is the whole step: forward + backward of every micro-batch, the
FSDP gradient reduce-scatter, the optimizer step and the LR scheduler; data loading, logging and the final
checkpoint are outside it. A step ends on every rank only after the collectives, so a step's time is the slower
rank's. Peak memory is each rank process's peak RSS (``ru_maxrss``, what the repo's CPU platform reports as
verl's ``perf/max_memory_allocated_gb``), the larger of the two ranks.

Noise (2 shared cores), handled twice:

1. ``--pairs`` pairs of runs, SFT, DFT, SFT, DFT, ...; DFT/SFT per adjacent pair, of the runs' median step
   times (first ``--warmup`` steps dropped) and of their peak RSS; median and min-max over pairs.
2. ``--alternating-runs`` runs in which the loss alternates every step (``set_loss_fn`` before each
   ``train_batch``; the first loss alternates between runs): DFT and SFT steps share the process and the load,
   so drift cancels. DFT/SFT is the ratio of the median DFT and SFT step times in a run. Only time is read from
   these runs (one process has one peak RSS).

    python benchmarks/step_time.py                       # 5 pairs + 3 alternating runs, 40 steps each
    python benchmarks/step_time.py --pairs 3 --alternating-runs 2 --steps 30 --assets /tmp/tiny
    python benchmarks/step_time.py --fused                # the same with model.use_fused_kernels=True
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOSSES = ("sft", "dft")


def timed(call, times: list):
    """Wrap ``call`` so that the wall time of every call is appended to ``times``."""

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        output = call(*args, **kwargs)
        times.append(time.perf_counter() - start)
        return output

    return wrapper


def alternating(client, first: str, tags: list):
    """Wrap ``client.train_batch`` so steps alternate SFT and DFT from ``first``; each step's loss goes to ``tags``."""
    from dft.train.losses.registry import LossConfig, get_loss_fn

    loss_fns = {name: get_loss_fn(LossConfig(name)) for name in LOSSES}
    order = (first, *(name for name in LOSSES if name != first))
    call = client.train_batch

    def wrapper(*args, **kwargs):
        tags.append(order[len(tags) % 2])
        client.set_loss_fn(loss_fn=loss_fns[tags[-1]])
        return call(*args, **kwargs)

    return wrapper


def compose_config(overrides: list[str]):
    """The config ``dft train`` would get from these overrides, validated and adapted as it does."""
    from hydra import compose, initialize_config_dir

    from dft.train.config import prepare_config

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base=None):
        return prepare_config(compose(config_name="dft_trainer", overrides=overrides))


def worker(out_dir: str, alternate_from: str, overrides: list[str]) -> None:
    """Under torchrun: train as ``dft.train.run`` does, timing each ``train_batch``; write this rank's JSON.

    ``alternate_from`` is ``sft`` or ``dft`` to alternate the loss every step starting there, or ``no``.
    """
    import torch.distributed as dist
    from verl.utils.distributed import destroy_global_process_group, initialize_global_process_group

    from dft.train.trainer import DFTTrainer

    config = compose_config(overrides)
    initialize_global_process_group()
    trainer = DFTTrainer(config=config)
    client, times, tags = trainer.training_client, [], []
    if alternate_from != "no":
        client.train_batch = alternating(client, alternate_from, tags)
    client.train_batch = timed(client.train_batch, times)
    trainer.fit()
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = {"step_times": times, "tags": tags or [config.loss.name] * len(times), "peak_rss": peak_rss}
    Path(out_dir, f"rank{dist.get_rank()}.json").write_text(json.dumps(result))
    destroy_global_process_group()


def run_once(loss: str, alternate_from: str, assets, steps: int, run_dir: Path, extra=()) -> dict:
    """One torchrun of ``steps`` steps; per step: the slower rank's time and the loss; peak RSS of the larger rank."""
    overrides = [
        "preset=tiny-cpu",
        f"loss.name={loss}",
        f"model.path={assets.model_dir}",
        f"data.train_files={assets.train_parquet}",
        f"trainer.total_training_steps={steps}",
        f"trainer.default_local_dir={run_dir}/ckpt",
        "trainer.logger=[console]",
        *extra,
    ]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += [__file__, "--worker", str(run_dir), alternate_from, *overrides]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{loss} run failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    ranks = [json.loads(p.read_text()) for p in sorted(run_dir.glob("rank*.json"))]
    step_times = [max(per_rank) for per_rank in zip(*(r["step_times"] for r in ranks))]
    return {"tags": ranks[0]["tags"], "step_times": step_times, "peak_rss": max(r["peak_rss"] for r in ranks)}


def median_by_loss(run: dict, warmup: int) -> dict:
    """``{loss: median step time}`` over the steps after ``warmup``."""
    kept = list(zip(run["tags"], run["step_times"]))[warmup:]
    return {name: statistics.median(t for tag, t in kept if tag == name) for name in {tag for tag, _ in kept}}


def run_pairs(assets, pairs: int, steps: int, warmup: int, work: Path, extra=()) -> list[dict]:
    """SFT, DFT, SFT, DFT, ... runs; per pair the two runs' median step time and peak RSS."""
    results = []
    for i in range(pairs):
        pair = {name: run_once(name, "no", assets, steps, work / f"pair{i}-{name}", extra) for name in LOSSES}
        for name, run in pair.items():
            run["median_s"] = median_by_loss(run, warmup)[name]
            print(f"[pair {i} {name}] median step {run['median_s']:.3f} s", file=sys.stderr, flush=True)
        results.append(pair)
    return results


def run_alternating(assets, runs: int, steps: int, warmup: int, work: Path, extra=()) -> list[dict]:
    """Runs whose loss alternates every step (starting SFT, then DFT, ...); per run the median step per loss."""
    results = []
    for i in range(runs):
        run = run_once("sft", LOSSES[i % 2], assets, steps, work / f"alternating{i}", extra)
        run["median_s"] = median_by_loss(run, warmup + warmup % 2)  # drop an even count: as many of each
        print(f"[alternating {i}] median steps {run['median_s']}", file=sys.stderr, flush=True)
        results.append(run)
    return results


def spread(values: list[float]) -> str:
    """``median (min-max)`` to 3 decimals."""
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def print_tables(pairs: list[dict], alternating_runs: list[dict], steps: int, warmup: int) -> None:
    """Markdown: the runs, then DFT/SFT over pairs and over alternating runs."""
    print(f"{steps} steps per run, the first {warmup} dropped; step time = slower rank's train_batch wall time\n")
    print("| run | loss | median step s | min-max step s | peak RSS MiB (larger rank) |")
    print("|---|---|---:|---:|---:|")
    for i, pair in enumerate(pairs):
        for name, run in pair.items():
            kept = run["step_times"][warmup:]
            print(
                f"| pair {i} | {name} | {run['median_s']:.3f} | {min(kept):.3f}-{max(kept):.3f} "
                f"| {run['peak_rss'] / 2**20:.0f} |"
            )
    for i, run in enumerate(alternating_runs):
        for name in LOSSES:
            print(f"| alternating {i} | {name} | {run['median_s'][name]:.3f} | | |")
    print("\n| DFT/SFT | median (min-max) |")
    print("|---|---:|")
    if pairs:
        times = [p["dft"]["median_s"] / p["sft"]["median_s"] for p in pairs]
        memory = [p["dft"]["peak_rss"] / p["sft"]["peak_rss"] for p in pairs]
        print(f"| step time, ratio of run medians over {len(pairs)} pairs | {spread(times)} |")
        print(f"| peak RSS over {len(pairs)} pairs | {spread(memory)} |")
    if alternating_runs:
        ratios = [r["median_s"]["dft"] / r["median_s"]["sft"] for r in alternating_runs]
        print(f"| step time, alternating steps, over {len(alternating_runs)} runs | {spread(ratios)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=5, help="SFT/DFT run pairs, alternating")
    parser.add_argument("--alternating-runs", type=int, default=3, help="runs alternating the loss every step")
    parser.add_argument("--steps", type=int, default=40, help="training steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="first steps of each run left out")
    parser.add_argument("--fused", action="store_true", help="model.use_fused_kernels=True (verl's fused log-probs)")
    parser.add_argument("--assets", help="where to build (or reuse) the tiny model and data; default a temp dir")
    parser.add_argument("--worker", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker[0], args.worker[1], args.worker[2:])
    from dft.models.tiny import build_tiny_assets

    with tempfile.TemporaryDirectory(prefix="step_time.") as tmp:
        assets = build_tiny_assets(args.assets or Path(tmp, "tiny"), n_train=2000, n_val=64, n_test=64, seed=0)
        load = os.getloadavg()[0]
        extra = ["model.use_fused_kernels=True"] if args.fused else []
        pairs = run_pairs(assets, args.pairs, args.steps, args.warmup, Path(tmp), extra)
        alternating_runs = run_alternating(assets, args.alternating_runs, args.steps, args.warmup, Path(tmp), extra)
    print(f"log-prob path: {'fused' if args.fused else 'unfused'}; load average {load:.2f} before / "
          f"{os.getloadavg()[0]:.2f} after")  # fmt: skip
    print_tables(pairs, alternating_runs, args.steps, args.warmup)


if __name__ == "__main__":
    main()
