#!/usr/bin/env bash
# The capability continuum: does dft diagnose's prior strength predict whether DFT beats SFT? Starting models of
# several strengths on the same data, each diagnosed, fine-tuned with SFT, DFT and prob_power at each of ALPHAS over
# SEEDS seeds, evaluated; one table and a figure of (DFT - SFT) against mean_target_prob (README.md).
# SCALE=tiny runs the same steps with tiny models (recipes/scale_tiny.sh: the tiny Base and a faithful Qwen2.5-Math).
source "$(dirname "$0")/../common.sh"
# the starting models
MODELS=${MODELS:-$PAPER_MODELS}
# prob_power's alphas (0 -> SFT's gradient, 1 is DFT's) and the fine-tuning seeds (trainer.seed)
ALPHAS=${ALPHAS:-"0.25 0.5"}
SEEDS=${SEEDS:-"0 1"}
# rows of the fine-tuning data each diagnosis scores
DIAGNOSE_ROWS=${DIAGNOSE_ROWS:-2000}

prepare_numina_for "$SETTING"
data=$(numina_for "$SETTING")
diagnoses=()
runs=()
losses=(sft dft)
for alpha in $ALPHAS; do losses+=("prob_power@$alpha"); done
for model in $MODELS; do
  read_preset "$model"
  common=(preset="$model" setting="$SETTING")
  scale_train_args "${common[@]}"
  COMMAND=diagnose step "$RUNS/diagnose/$model" bash scripts/train.sh "${common[@]}" data.train_files="$data" \
    out="$RUNS/diagnose/$model" limit="$DIAGNOSE_ROWS" "${SCALE_TRAIN[@]}"
  diagnoses+=(--diagnosis "$model=$RUNS/diagnose/$model")
  # the base model's evaluation is Table 1's (the same command and folder)
  evaluate "$HUB_ID" "$RUNS/eval/$model-base"
  runs+=(--run "$model|base|0=$RUNS/eval/$model-base/summary.json")
  for loss in "${losses[@]}"; do
    name=${loss/@/-}
    overrides=(loss.name="${loss%@*}")
    [ "$loss" != "${loss%@*}" ] && overrides+=(loss.power_alpha="${loss#*@}")
    for seed in $SEEDS; do
      train "$RUNS/train/continuum/$model-$name-s$seed" "${common[@]}" "${overrides[@]}" trainer.seed="$seed" \
        data.train_files="$data" "$@"
      evaluate "$RUNS/train/continuum/$model-$name-s$seed" "$RUNS/eval/continuum/$model-$name-s$seed"
      runs+=(--run "$model|$loss|$seed=$RUNS/eval/continuum/$model-$name-s$seed/summary.json")
    done
  done
done
run python -m dft continuum "${diagnoses[@]}" "${runs[@]}" --out "$RUNS/continuum"
