#!/usr/bin/env bash
# Loss normalisation ablation: SFT and DFT on Qwen2.5-Math-1.5B with the paper's official settings, trained under
# loss.normalization=official (the official trainer's per-micro-batch means) and =token (the global token mean),
# everything else equal; evaluated with avg@16 and rendered as one table (README.md). The official runs are
# Table 1's (same folders: a finished run does nothing when started again).
source "$(dirname "$0")/../common.sh"
MODEL=${MODEL:-qwen2.5-math-1.5b}
LOSSES=${LOSSES:-"sft dft"}

prepare_numina_paper
table_runs=()
for loss in $LOSSES; do
  for norm in official token; do
    # the official runs keep Table 1's folder names
    [ "$norm" = official ] && name="$MODEL-$loss" || name="$MODEL-$loss-token"
    train "$RUNS/train/$name" preset="$MODEL" setting=paper loss.name="$loss" loss.normalization="$norm" \
      data.train_files="$DATA/numina-paper/train.parquet" "$@"
    evaluate "$RUNS/train/$name" "$RUNS/eval/$name"
    table_runs+=(--run "${loss^^}/$norm=$RUNS/eval/$name/summary.json")
  done
done
run python -m dft ablations normalization "${table_runs[@]}" --out "$RUNS/normalization.md"
