"""ASFT's KL term against ``loss.kl_beta`` on the tiny model, through the real path: ``dft ref_logprobs ref.topk=K``
scores the starting model's top-K once, then ``dft train loss.name=asft`` (2 processes) runs for each beta.

Prints per beta the ``train/kl`` (the mean KL_K(reference || policy) per target token) at the first and last
step and ``train/nll``. The reference is the random tiny model, whose top-K holds little mass
(docs/beyond_dft.md): the KL here is the K + 1 bucket KL the loss optimises, not the full one.

    python benchmarks/asft_kl_beta.py --out /tmp/asft_kl [--betas 0 1 10 --steps 24 --topk 8]
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from dft.models.tiny import build_tiny_assets

REPO = Path(__file__).resolve().parents[1]


def run(command: str, args: list[str], log: Path) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "dft", command,
           *args]  # fmt: skip
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, VERL_FILE_LOGGER_PATH=str(log), PYTHONUNBUFFERED="1")
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"dft {command} failed:\n{result.stderr[-4000:]}")


def read_log(log: Path) -> dict[int, dict]:
    steps = {}
    for line in log.read_text().splitlines():
        row = json.loads(line)
        steps.setdefault(row["step"], {}).update(row["data"])
    return steps


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--betas", type=float, nargs="+", default=[0.0, 1.0, 10.0])
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--topk", type=int, default=8)
    args = parser.parse_args(argv)
    tiny = build_tiny_assets(args.out / "tiny", n_train=256, n_val=32, n_test=16, seed=0)
    base = ["preset=tiny-cpu", f"model.path={tiny.model_dir}"]
    scored = args.out / f"train.top{args.topk}.parquet"
    if not scored.exists():
        score = [*base, f"data.train_files={tiny.train_parquet}", f"ref.output={scored}", f"ref.topk={args.topk}"]
        run("ref_logprobs", score, args.out / "score.log")
    results = {}
    for beta in args.betas:
        run_dir = args.out / f"beta{beta:g}"
        train = [*base, f"data.train_files={scored}", "data.val_files=null", "trainer.total_epochs=100",
                 f"trainer.total_training_steps={args.steps}", f"trainer.default_local_dir={run_dir}/ckpt",
                 "trainer.save_freq=-1", "trainer.logger=[console,file]", "loss.name=asft",
                 f"loss.kl_beta={beta}"]  # fmt: skip
        if not (run_dir / "log.jsonl").exists():
            run("train", train, run_dir / "log.jsonl")
        log = read_log(run_dir / "log.jsonl")
        first, last = log[min(log)], log[max(log)]
        results[beta] = {"kl_first": first["train/kl"], "kl_last": last["train/kl"], "nll_last": last["train/nll"]}
    print(f"tiny model, top-{args.topk} reference, {args.steps} steps of asft per beta")
    print("| kl_beta | train/kl step 1 | train/kl last step | train/nll last step |\n|---|---|---|---|")
    for beta, r in results.items():
        print(f"| {beta:g} | {r['kl_first']:.2e} | {r['kl_last']:.4f} | {r['nll_last']:.3f} |")
    (args.out / "asft_kl_beta.json").write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
