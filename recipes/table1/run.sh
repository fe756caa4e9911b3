#!/usr/bin/env bash
# Table 1: five models x {Base, SFT, DFT} on NuminaMath-CoT, evaluated with avg@16 (see README.md).
# Training runs with setting=paper (the official launch's settings; SETTING=corrected for ours).
# Arguments are Hydra overrides for every training run:  DRY_RUN=1 bash recipes/table1/run.sh optim.lr=2e-5
source "$(dirname "$0")/../common.sh"
MODELS=${MODELS:-$PAPER_MODELS}
LOSSES=${LOSSES:-"sft dft"}

prepare_numina_for "$SETTING"
table_runs=()
for model in $MODELS; do
  read_preset "$model"
  evaluate "$HUB_ID" "$RUNS/eval/$model-base"
  table_runs+=(--run "$PAPER_NAME/Base=$RUNS/eval/$model-base/summary.json")
  for loss in $LOSSES; do
    train "$RUNS/train/$model-$loss" preset="$model" setting="$SETTING" loss.name="$loss" \
      data.train_files="$(numina_for "$SETTING")" "$@"
    evaluate "$RUNS/train/$model-$loss" "$RUNS/eval/$model-$loss"
    table_runs+=(--run "$PAPER_NAME/${loss^^}=$RUNS/eval/$model-$loss/summary.json")
  done
done
tables table1 "${table_runs[@]}"
