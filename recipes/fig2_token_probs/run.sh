#!/usr/bin/env bash
# Figure 2: the distribution of training-set token probabilities under the base model and after SFT, DFT, DPO,
# PPO and GRPO (Qwen2.5-Math-1.5B), scored by verl's engine (dft.train.ref_scoring) and drawn as histograms with a
# log-scale count axis. Uses the models trained by recipes/table1 and recipes/table3 (run those first).
source "$(dirname "$0")/../common.sh"
MODEL=${MODEL:-qwen2.5-math-1.5b}
read_preset "$MODEL"
# training examples scored (a random sample of the NuminaMath-CoT training set)
ROWS=${ROWS:-2000}
METHODS=${METHODS:-"sft dft dpo ppo grpo"}

# in the data format the models were trained in (setting=paper: the official one; SETTING=corrected: chat)
[ "$SETTING" = paper ] && format=official || format=chat
step "$DATA/numina-sample" python -m dft data numina --out "$DATA/numina-sample" --n "$ROWS" --selection random --seed 1 \
  --on-bad-row skip --format "$format" "${SCALE_NUMINA[@]}"
sample="$DATA/numina-sample/train.parquet"
score "$RUNS/fig2/base.parquet" preset="$MODEL" setting="$SETTING" data.train_files="$sample" "$@"
figure_runs=(--run "Base=$RUNS/fig2/base.parquet")
for method in $METHODS; do
  score "$RUNS/fig2/$method.parquet" preset="$MODEL" setting="$SETTING" model.path="$RUNS/train/$MODEL-$method" \
    data.train_files="$sample" "$@"
  figure_runs+=(--run "${method^^}=$RUNS/fig2/$method.parquet")
done
run python -m dft figures token_probs "${figure_runs[@]}" --model "$PAPER_NAME" --setting "$SETTING" \
  --out "$RUNS/fig2_token_probs.$FIGURE_FORMAT"
