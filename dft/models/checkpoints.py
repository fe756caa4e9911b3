"""Find the Hugging Face weights inside a verl checkpoint folder, so commands can take a run folder as a model.

    python -m dft checkpoints merge runs/train/qwen2.5-math-1.5b-lora-dft

``merge`` runs verl's own model merger on the run's latest step (``python -m verl.model_merger merge --backend
fsdp``) into ``global_step_N/merged``: needed for LoRA runs, whose ``huggingface/`` folder holds PEFT-wrapped
weights that neither transformers nor vLLM load as a model, and for checkpoints saved without ``hf_model``.
"""

import argparse
import subprocess
import sys
from pathlib import Path

from dft.core.args import DefaultsHelpFormatter

TRACKER = "latest_checkpointed_iteration.txt"
# where a step's Hugging Face weights are, in order: merged by `merge`, the SFT trainer's, the PPO actor's
HF_SUBDIRS = ("merged", "huggingface", "actor/huggingface")
LORA_META = "lora_train_meta.json"


def _has_weights(folder: Path) -> bool:
    return any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))


def latest_step_dir(root: Path) -> Path | None:
    """``global_step_N`` of the latest checkpoint of a verl run folder, or None if ``root`` is not one."""
    tracker = Path(root) / TRACKER
    return Path(root) / f"global_step_{tracker.read_text().strip()}" if tracker.is_file() else None


def _sharded_dir(step_dir: Path) -> Path:
    """The folder of FSDP shards of a step: the step itself (SFT) or its actor (PPO)."""
    return step_dir / "actor" if (step_dir / "actor").is_dir() else step_dir


def resolve_model(model: str) -> str:
    """``model`` itself, unless it is a verl checkpoint folder (``trainer.default_local_dir``): then the Hugging
    Face weights of its latest step (``merged``, ``huggingface`` or the PPO actor's ``huggingface``)."""
    step_dir = latest_step_dir(Path(model))
    if step_dir is None:
        return model
    lora = (_sharded_dir(step_dir) / LORA_META).is_file()
    for sub in HF_SUBDIRS:
        if _has_weights(step_dir / sub) and not (lora and sub != "merged"):
            print(f"[dft] {model} is a verl checkpoint folder: using {step_dir / sub}")
            return str(step_dir / sub)
    why = "a LoRA checkpoint needs merging" if lora else f"no Hugging Face weights in {', '.join(HF_SUBDIRS)}"
    raise FileNotFoundError(
        f"{step_dir}: {why}; run `python -m dft checkpoints merge {model}` (verl's model merger), or save with "
        "checkpoint.save_contents including hf_model"
    )


def merge_command(run_dir: Path) -> list[str]:
    """verl's model merger on the latest step of ``run_dir``, into ``global_step_N/merged``."""
    step_dir = latest_step_dir(run_dir)
    if step_dir is None:
        raise FileNotFoundError(f"{run_dir} is not a verl checkpoint folder (no {TRACKER})")
    return [sys.executable, "-m", "verl.model_merger", "merge", "--backend", "fsdp",
            "--local_dir", str(_sharded_dir(step_dir)), "--target_dir", str(step_dir / "merged")]  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dft checkpoints",
        description=__doc__.splitlines()[0],
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("action", choices=["merge"])
    parser.add_argument("run_dir", type=Path, help="a run's trainer.default_local_dir")
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(subprocess.run(merge_command(args.run_dir)).returncode)


if __name__ == "__main__":
    main()
