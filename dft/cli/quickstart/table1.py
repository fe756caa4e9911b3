"""Table 1 of the paper at toy scale on a CPU, ``python -m dft quickstart``: recipes/table1 with the quickstart's
knobs (the tiny Base only, on the held-out tiny_math problems) and its fine-tuning overrides."""

from pathlib import Path

from dft.cli.quickstart.recipe import run_recipe


def table1_knobs(args) -> dict[str, str]:
    """The Table 1 recipe's knobs for the quickstart's options: the tiny Base only, our corrected setting (the chat
    format the tiny model is evaluated in), every fine-tuning row, the held-out tiny_math benchmark."""
    return {
        "MODELS": "tiny-cpu",
        "SETTING": "corrected",
        "GRADER": "ours",
        "TINY_PROBLEMS": str(args.n_train),
        "PRETRAIN_STEPS": str(args.pretrain_steps),
        "N_TRAIN": str(args.n_train // 2),
        "EVAL_BENCHMARKS": "[tiny_math]",
        "EVAL_LIMIT": str(args.n_test),
        "EVAL_SAMPLES": "1",
        "EVAL_MAX_NEW_TOKENS": str(args.max_new_tokens),
    }


def finetune_overrides(args) -> list[str]:
    """Every fine-tuning run's Hydra overrides (the recipe's arguments): the quickstart's steps and learning rate."""
    return [f"optim.lr={args.lr}", f"trainer.total_training_steps={args.steps}", "data.train_batch_size=32",
            "trainer.save_freq=50"]  # fmt: skip


def run(args) -> Path:
    """recipes/table1 at toy scale into ``args.out``; returns the table's markdown file."""
    out = args.out.resolve()
    run_recipe("table1", table1_knobs(args), finetune_overrides(args), out)
    return out / "runs" / "table1.md"
