"""``python -m dft quickstart [table3|continuum]``: the CPU quickstart's command line (Table 1 by default, Table 3,
or the capability continuum of docs/when_dft_helps.md)."""

import argparse
from pathlib import Path

from dft.cli.quickstart import continuum, table1, table3
from dft.core.args import DefaultsHelpFormatter, at_least, positive_float, positive_int


def build_parser() -> argparse.ArgumentParser:
    """The quickstart's arguments (also what ``dft recipes check`` reads to check a recipe's quickstart line)."""
    parser = argparse.ArgumentParser(
        description="Tiny end-to-end DFT vs SFT run on CPU (Table 1; table3 adds the paper's baselines).",
        formatter_class=DefaultsHelpFormatter,
    )
    tables = ("table1: Base, SFT, DFT (default); table3: the offline and online baselines too; continuum: SFT, DFT "
              "and prob_power from starting models of several strengths (out: runs/continuum)")  # fmt: skip
    parser.add_argument("table", nargs="?", choices=("table1", "table3", "continuum"), default="table1", help=tables)
    parser.add_argument("--out", type=Path, default=Path("runs/quickstart"), help="output directory")
    parser.add_argument("--pretrain-steps", type=positive_int, default=150, help="cross-entropy steps that make Base")
    parser.add_argument("--steps", type=positive_int, default=100, help="fine-tuning steps per loss (batch 32)")
    parser.add_argument("--lr", type=positive_float, default=1e-3, help="fine-tuning learning rate")
    parser.add_argument("--n-train", type=at_least(64, "half pretrains and half fine-tunes, batch 32 each"),
                        default=4000, help="training problems (half pretrain, half fine-tune)")  # fmt: skip
    parser.add_argument("--n-test", type=positive_int, default=200, help="held-out problems every row is evaluated on")
    parser.add_argument("--max-new-tokens", type=positive_int, default=64, help="new tokens per evaluated answer")
    table3.add_arguments(parser.add_argument_group("table3"))
    continuum.add_arguments(parser.add_argument_group("continuum"))
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    if args.table == "continuum":
        return continuum.main(args)
    if args.table == "table3":
        return table3.main(args)
    out = args.out.resolve()
    summary = table1.run(out, args.pretrain_steps, args.steps, args.lr, args.n_train, args.n_test, args.max_new_tokens)
    print()
    print(table1.format_table(summary["results"], f"tiny-math ({summary['benchmark']['n']})"))
    print(f"\nresults: {args.out / 'results.json'}   wall time: {summary['wall_s']:.0f} s")
