"""Does the loss normalisation matter? The tiny-model answer, on a CPU, through verl's real engine.

    python scripts/normalization_demo.py [--out runs/normalization_demo] [--steps 300] \\
        [--figure docs/normalization_tiny.png]

1. builds the tiny model and word problems (``dft.models.tiny``) and pretrains a Base with cross-entropy on one half of
   the problems (as ``dft quickstart`` does: DFT needs a base that already puts mass on the right tokens);
2. fine-tunes Base with DFT on the other half, twice, with the same seed and data order: ``loss.normalization=
   token`` and ``=official``; 2 processes, batch 32, fixed micro-batches of 4 (4 per rank), float32;
3. prints step 1 of both (``train/loss``, ``train/grad_norm``) and the mean ``train/nll`` of the last 20 steps,
   and draws the ``train/nll`` and ``train/grad_norm`` curves (``--figure``, plus the numbers as JSON).

Finished stages are reused when it is run again. Not a test: a few minutes of two CPU cores.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from dft.models.tiny import build_tiny_assets, write_sft_parquet

REPO = Path(__file__).resolve().parents[1]
FP32 = [f"++engine.mixed_precision.{k}=fp32" for k in ("param_dtype", "reduce_dtype", "buffer_dtype")]
NORMALIZATIONS = ("token", "official")


def train(out: Path, model: Path, data: Path, loss: str, steps: int, extra: list[str]) -> dict:
    """``dft train`` under torchrun on 2 processes; returns ``{step: metrics}`` from verl's file logger."""
    log = out / "log.jsonl"
    if not (out / "done").exists():
        out.mkdir(parents=True, exist_ok=True)
        log.unlink(missing_ok=True)
        args = ["preset=tiny-cpu", f"loss.name={loss}", f"model.path={model}", f"data.train_files={data}",
                "trainer.total_epochs=100", f"trainer.total_training_steps={steps}", "trainer.resume_mode=disable",
                f"trainer.default_local_dir={out / 'ckpt'}", "trainer.logger=[console,file]", *FP32,
                *extra]  # fmt: skip
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
        cmd += ["-m", "dft", "train"]
        env = dict(os.environ, VERL_FILE_LOGGER_PATH=str(log), PYTHONPATH=str(REPO))
        subprocess.run([*cmd, *args], cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
        (out / "done").write_text("")
    steps_logged = {}
    for line in log.read_text().splitlines():
        row = json.loads(line)
        steps_logged.setdefault(row["step"], {}).update(row["data"])
    return steps_logged


def base_model(root: Path, pretrain_steps: int) -> tuple[Path, Path]:
    """(the pretrained Base, the fine-tuning data): halves of the tiny problems."""
    assets = build_tiny_assets(root / "tiny", n_train=19200, n_val=16, n_test=16, seed=0)
    half = len(assets.train_records) // 2
    pretrain, finetune = root / "pretrain.parquet", root / "finetune.parquet"
    if not finetune.exists():
        write_sft_parquet(assets.train_records[:half], pretrain)
        write_sft_parquet(assets.train_records[half:], finetune)
    run = root / "base"
    extra = ["optim.lr=3e-3", "checkpoint.save_contents=[model,hf_model]"]
    train(run, assets.model_dir, pretrain, "sft", pretrain_steps, extra)
    return run / "ckpt" / f"global_step_{pretrain_steps}" / "huggingface", finetune


def draw(curves: dict, out: Path) -> None:
    from dft.report.figures import new_figure, save

    fig = new_figure(10, 4)
    nll, grad = fig.subplots(1, 2)
    for norm, logged in curves.items():
        steps = sorted(logged)
        nll.plot(steps, [logged[s]["train/nll"] for s in steps], label=f"loss.normalization={norm}", lw=1)
        grad.plot(steps, [logged[s]["train/grad_norm"] for s in steps], label=norm, lw=1)
    nll.set(xlabel="step", ylabel="train/nll (global token mean)", title="DFT on the tiny model: train/nll")
    grad.set(xlabel="step", ylabel="train/grad_norm (before the clip at 1.0)", yscale="log", title="gradient norm")
    for ax in (nll, grad):
        ax.grid(alpha=0.3)
        ax.legend()
    numbers = {norm: {str(s): {k: v[k] for k in ("train/loss", "train/nll", "train/grad_norm", "train/lr")}
                      for s, v in sorted(logged.items())} for norm, logged in curves.items()}  # fmt: skip
    save(fig, out, numbers)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "normalization_demo")
    parser.add_argument("--steps", type=int, default=300, help="DFT steps per normalisation")
    parser.add_argument("--pretrain-steps", type=int, default=150)
    parser.add_argument("--figure", type=Path, default=REPO / "docs" / "normalization_tiny.png")
    args = parser.parse_args(argv)
    base, data = base_model(args.out, args.pretrain_steps)
    # loss.official_micro_batches=4: the official trainer's step on this layout itself (4 micro-batches per rank),
    # as docs/normalization.md recorded it, not the 8-GPU paper run's (8)
    fixed = ["optim.lr=1e-3", "data.use_dynamic_bsz=False", "data.micro_batch_size_per_gpu=4",
             "loss.official_micro_batches=4", "checkpoint.save_contents=[model]"]  # fmt: skip
    curves = {n: train(args.out / n, base, data, "dft", args.steps, [*fixed, f"loss.normalization={n}"])
              for n in NORMALIZATIONS}  # fmt: skip
    for norm, logged in curves.items():
        last = [logged[s]["train/nll"] for s in sorted(logged)[-20:]]
        first = logged[1]
        print(f"{norm:>8}: step 1 train/loss {first['train/loss']:.6f} train/grad_norm {first['train/grad_norm']:.6f}"
              f" | train/nll mean of the last 20 steps {sum(last) / len(last):.4f}")  # fmt: skip
    draw(curves, args.figure)
    print(f"wrote {args.figure}")


if __name__ == "__main__":
    main()
