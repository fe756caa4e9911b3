"""Table 3 of the paper at toy scale on a CPU: ``python -m dft quickstart table3``.

No second implementation: the quickstart runs the recipes a cluster runs, at toy scale (``SCALE=tiny``,
recipes/scale_tiny.sh) in ``OUT/runs`` and ``OUT/data``, through :func:`dft.cli.quickstart.recipe.run_recipe`:

1. ``recipes/table1`` (Base, SFT, DFT) and ``recipes/table2`` (iw-SFT) on the tiny Base with the Table 1
   quickstart's knobs, so Table 1's runs in the same folder are reused (their steps are skipped, not redone);
2. ``recipes/table3``: rejection sampling from Base, RFT (SFT), iw-SFT and DFT on the accepted samples, DPO on the
   pairs, PPO and GRPO through verl's ``main_ppo`` (``scripts/train_rl.sh rl_setting=tiny-cpu``), every row
   evaluated as Table 1's and the table written to ``OUT/runs/table3.md``, which is printed.

Resume and refusal are the recipes': a finished step is skipped, an interrupted one resumes, and other options
into the same ``--out`` are refused naming the differing knobs (``OUT/runs/recipes/<recipe>.json``).
"""

from pathlib import Path

from dft.cli.quickstart.recipe import run_recipe, table_lines
from dft.cli.quickstart.table1 import finetune_overrides, table1_knobs

NOTE = "The numbers show the pipeline works; at this scale they say nothing about the paper's claims."
DEFAULTS = {"rft_problems": 48, "offline_steps": 4, "dpo_lr": 1e-4, "rl_steps": 2, "rl_lr": 1e-4}


def table3_knobs(args, knobs: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """recipes/table3's knobs: Table 1's, and the Table 3 options; offline runs get ``--offline-steps``."""
    return {
        **knobs,
        "MODEL": "tiny-cpu",
        "N_PROBLEMS": str(args.rft_problems),
        "RL_STEPS": str(args.rl_steps),
        "RL_LR": str(args.rl_lr),
        "DPO_LR": str(args.dpo_lr),
    }, [f"trainer.total_training_steps={args.offline_steps}", f"optim.lr={args.lr}"]


def run(args) -> Path:
    """Tables 1-2's runs, then Table 3's; returns the table's markdown file."""
    out = args.out.resolve()
    knobs, overrides = table1_knobs(args), finetune_overrides(args)
    run_recipe("table1", knobs, overrides, out)
    run_recipe("table2", knobs, overrides, out)
    knobs3, overrides3 = table3_knobs(args, knobs)
    run_recipe("table3", knobs3, overrides3, out)
    return out / "runs" / "table3.md"


def add_arguments(parser) -> None:
    """Table 3's own options (the Table 1 options set Base, SFT, iw-SFT and DFT)."""
    parser.add_argument("--rft-problems", type=int, default=DEFAULTS["rft_problems"],
                        help="problems for rejection sampling and RL (N_PROBLEMS)")  # fmt: skip
    parser.add_argument("--offline-steps", type=int, default=DEFAULTS["offline_steps"],
                        help="steps of each offline run (RFT, iw-SFT, DFT, DPO)")  # fmt: skip
    parser.add_argument("--dpo-lr", type=float, default=DEFAULTS["dpo_lr"], help="DPO learning rate (DPO_LR)")
    parser.add_argument("--rl-steps", type=int, default=DEFAULTS["rl_steps"],
                        help="PPO and GRPO steps, 16 prompts each (RL_STEPS)")  # fmt: skip
    parser.add_argument("--rl-lr", type=float, default=DEFAULTS["rl_lr"], help="PPO and GRPO actor learning rate")


def main(args) -> None:
    table = run(args)
    if not table.is_file():  # DRY_RUN=1: the recipes printed their commands
        return
    print()
    print(table_lines(table))
    print(f"\n{NOTE}")
    print(f"table: {table}   every run: {table.parent}")
