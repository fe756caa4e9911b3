#!/usr/bin/env bash
# Critique fine-tuning (CFT, Wang et al. 2025) with SFT and DFT: the model learns to critique a given solution
# (WebInstruct-CFT), then is evaluated on the paper's five benchmarks, one table of both losses (README.md).
source "$(dirname "$0")/../common.sh"
MODELS=${MODELS:-qwen2.5-math-1.5b}
LOSSES=${LOSSES:-"sft dft"}
# CFT examples (WebInstruct-CFT-50K has 50,000)
N_CFT=${N_CFT:-50000}

step "$DATA/cft" python -m dft data cft --out "$DATA/cft" --n "$N_CFT" --selection random --seed 0 --on-bad-row skip \
  "${SCALE_CFT[@]}"
table_runs=()
for model in $MODELS; do
  read_preset "$model"
  for loss in $LOSSES; do
    train "$RUNS/train/$model-cft-$loss" preset="$model" loss.name="$loss" data.train_files="$DATA/cft/train.parquet" "$@"
    evaluate "$RUNS/train/$model-cft-$loss" "$RUNS/eval/$model-cft-$loss"
    table_runs+=(--run "$PAPER_NAME/${loss^^}=$RUNS/eval/$model-cft-$loss/summary.json")
  done
done
run python -m dft ablations cft "${table_runs[@]}" --out "$RUNS/cft.md"
