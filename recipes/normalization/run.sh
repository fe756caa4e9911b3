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
    # the official runs are Table 1's, folder and command (setting=paper's normalisation is official): a finished
    # one is not trained again, and naming loss.normalization=official there would be another command for it
    if [ "$norm" = official ]; then name="$MODEL-$loss" norm_args=(); else
      name="$MODEL-$loss-$norm" norm_args=(loss.normalization="$norm"); fi
    train "$RUNS/train/$name" preset="$MODEL" setting=paper loss.name="$loss" "${norm_args[@]}" \
      data.train_files="$DATA/numina-paper/train.parquet" "$@"
    evaluate "$RUNS/train/$name" "$RUNS/eval/$name"
    table_runs+=(--run "${loss^^}/$norm=$RUNS/eval/$name/summary.json")
  done
done
run python -m dft ablations normalization "${table_runs[@]}" --out "$RUNS/normalization.md"
