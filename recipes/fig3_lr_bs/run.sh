#!/usr/bin/env bash
# Figure 3: sensitivity of SFT and DFT to the learning rate (batch 256) and the batch size (lr 5e-5) on
# Qwen2.5-Math-1.5B (README.md). lr 5e-5 at batch 256 is one run shared by both sweeps. Training runs with
# setting=paper (SETTING=corrected for ours).
source "$(dirname "$0")/../common.sh"
MODEL=${MODEL:-qwen2.5-math-1.5b}
read_preset "$MODEL"
LOSSES=${LOSSES:-"sft dft"}
LRS=${LRS:-"2e-4 1e-4 5e-5 1e-5"}
BATCH_SIZES=${BATCH_SIZES:-"32 64 128 256"}
BASE_LR=${BASE_LR:-5e-5}
BASE_BATCH=${BASE_BATCH:-256}
BENCHMARK=${BENCHMARK:-average}

# train_and_evaluate LOSS LR BATCH: one point of a sweep; prints nothing itself.
train_and_evaluate() {
  local name="$MODEL-$1-lr$2-bs$3"
  train "$RUNS/train/fig3/$name" preset="$MODEL" setting="$SETTING" loss.name="$1" optim.lr="$2" \
    data.train_batch_size="$3" data.train_files="$(numina_for "$SETTING")" "${overrides[@]}"
  evaluate "$RUNS/train/fig3/$name" "$RUNS/eval/fig3/$name"
}

overrides=("$@")
prepare_numina_for "$SETTING"
lr_runs=() bs_runs=()
for loss in $LOSSES; do
  for lr in $LRS; do
    train_and_evaluate "$loss" "$lr" "$BASE_BATCH"
    lr_runs+=(--run "${loss^^}@$lr=$RUNS/eval/fig3/$MODEL-$loss-lr$lr-bs$BASE_BATCH/summary.json")
  done
  for bs in $BATCH_SIZES; do
    [ "$bs" = "$BASE_BATCH" ] && [[ " $LRS " == *" $BASE_LR "* ]] || train_and_evaluate "$loss" "$BASE_LR" "$bs"
    bs_runs+=(--run "${loss^^}@$bs=$RUNS/eval/fig3/$MODEL-$loss-lr$BASE_LR-bs$bs/summary.json")
  done
done
title=(--model "$PAPER_NAME" --setting "$SETTING")
run python -m dft figures sweep --param lr "${lr_runs[@]}" --benchmark "$BENCHMARK" "${title[@]}" \
  --out "$RUNS/fig3_lr.$FIGURE_FORMAT"
run python -m dft figures sweep --param batch_size "${bs_runs[@]}" --benchmark "$BENCHMARK" "${title[@]}" \
  --out "$RUNS/fig3_batch_size.$FIGURE_FORMAT"
