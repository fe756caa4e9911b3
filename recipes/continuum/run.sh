#!/usr/bin/env bash
# The capability continuum: does dft diagnose's prior strength predict whether DFT beats SFT? Starting models of
# several strengths on the same data, each diagnosed, fine-tuned with SFT, DFT and prob_power at two alphas over
# SEEDS seeds, evaluated; one table and a figure of (DFT - SFT) against mean_target_prob (README.md).
#   SCALE=tiny: the toy scale on a CPU (python -m dft quickstart continuum, ~25 minutes on 2 cores)
#   SCALE=cluster (default): the paper's models as the starting strengths, on the paper's data
source "$(dirname "$0")/../common.sh"
SCALE=${SCALE:-cluster}
# the starting models (cluster) and the pretraining steps of the tiny starting models (tiny)
MODELS=${MODELS:-$PAPER_MODELS}
STRENGTHS=${STRENGTHS:-"10 25 50 150 400 1000"}
# prob_power's alphas (0 -> SFT's gradient, 1 is DFT's) and the fine-tuning seeds (trainer.seed)
ALPHAS=${ALPHAS:-"0.25 0.5"}
SEEDS=${SEEDS:-"0 1"}
# rows of the fine-tuning data each diagnosis scores
DIAGNOSE_ROWS=${DIAGNOSE_ROWS:-2000}

if [ "$SCALE" = tiny ]; then
  run python -m dft quickstart continuum --out "$RUNS/continuum" --strengths $STRENGTHS --seeds "$(wc -w <<<"$SEEDS")" \
    --steps 100 --n-train 4000 --n-test 200
  exit 0
fi

prepare_numina_for "$SETTING"
data=$(numina_for "$SETTING")
diagnoses=()
runs=()
losses=(sft dft)
for alpha in $ALPHAS; do losses+=("prob_power@$alpha"); done
for model in $MODELS; do
  read_preset "$model"
  common=(preset="$model" setting="$SETTING")
  COMMAND=diagnose bash scripts/train.sh "${common[@]}" data.train_files="$data" out="$RUNS/diagnose/$model" \
    limit="$DIAGNOSE_ROWS"
  diagnoses+=(--diagnosis "$model=$RUNS/diagnose/$model")
  evaluate "$HUB_ID" "$RUNS/eval/continuum/$model-base"
  runs+=(--run "$model|base|0=$RUNS/eval/continuum/$model-base/summary.json")
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
