"""``python -m dft quickstart [table3|continuum]``: the CPU quickstart, which is the Table 1 recipe at toy scale
(``table3``: the Table 3 recipe; ``continuum``: the toy study of docs/when_dft_helps.md).

``python -m dft quickstart`` runs, and prints the command it runs::

    SCALE=tiny RUNS=runs/quickstart/runs DATA=runs/quickstart/data MODELS=tiny-cpu SETTING=corrected ... \\
        bash recipes/table1/run.sh optim.lr=1e-3 trainer.total_training_steps=100 ...

the same run.sh, common.sh and commands a cluster runs (recipes/scale_tiny.sh: the toy sizes and sources): the tiny
Base is ``dft tiny``'s model pretrained with cross-entropy (DFT reweights tokens by the model's own probability, so
like the paper it needs a base that already puts some mass on the right tokens), fine-tuned with SFT and DFT by
``dft train`` (torchrun, 2 processes, FSDP2) on NuminaMath-CoT-layout rows of held-out word problems, evaluated on
the held-out ``tiny_math`` benchmark and rendered by ``dft tables`` in the paper's Table 1 layout. Run it again and
finished steps are skipped, an interrupted one resumes; other options into the same ``--out`` are refused, naming
them (recipes/common.sh, dft/cli/recipe_steps.py).
"""

import argparse
import time
from pathlib import Path

from dft.cli.quickstart import table1
from dft.cli.quickstart.recipe import table_lines
from dft.core.args import DefaultsHelpFormatter, at_least, positive_float, positive_int

TEST_PROBLEMS = 200  # the held-out problems recipes/scale_tiny.sh builds; --n-test evaluates the first N


def build_parser() -> argparse.ArgumentParser:
    """The quickstart's arguments (also what ``dft recipes check`` reads to check a recipe's quickstart line)."""
    parser = argparse.ArgumentParser(
        description="Tiny end-to-end DFT vs SFT run on CPU: the Table 1 recipe at toy scale (table3: the Table 3 "
        "recipe).",
        formatter_class=DefaultsHelpFormatter,
    )
    tables = ("table1: Base, SFT, DFT (default); table3: the offline and online baselines too; continuum: SFT, DFT "
              "and prob_power from starting models of several strengths (out: runs/continuum)")  # fmt: skip
    parser.add_argument("table", nargs="?", choices=("table1", "table3", "continuum"), default="table1", help=tables)
    parser.add_argument("--out", type=Path, default=Path("runs/quickstart"), help="output directory")
    parser.add_argument("--pretrain-steps", type=positive_int, default=120, help="cross-entropy steps that make Base")
    parser.add_argument("--steps", type=positive_int, default=50, help="fine-tuning steps per loss (batch 32)")
    parser.add_argument("--lr", type=positive_float, default=1e-3, help="fine-tuning learning rate")
    parser.add_argument("--n-train", type=at_least(64, "half pretrains and half fine-tunes, batch 32 each"),
                        default=4000, help="training problems (half pretrain, half fine-tune)")  # fmt: skip
    parser.add_argument("--n-test", type=at_most(TEST_PROBLEMS), default=120,
                        help="held-out problems every row is evaluated on")  # fmt: skip
    parser.add_argument("--max-new-tokens", type=positive_int, default=64, help="new tokens per evaluated answer")
    from dft.cli.quickstart import continuum, table3

    table3.add_arguments(parser.add_argument_group("table3"))
    continuum.add_arguments(parser.add_argument_group("continuum"))
    return parser


def at_most(limit: int):
    def parse(text: str) -> int:
        value = positive_int(text)
        if value > limit:
            raise argparse.ArgumentTypeError(f"at most {limit} (the held-out problems the toy scale builds)")
        return value

    return parse


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    from dft.cli.quickstart import continuum, table3

    if args.table == "continuum":
        return continuum.main(args)
    if args.table == "table3":
        return table3.main(args)
    start, table = time.time(), table1.run(args)
    print()
    print(table_lines(table))
    print(f"\ntable: {table}   wall time: {time.time() - start:.0f} s")
