#!/usr/bin/env bash
# Beyond DFT: SFT, DFT, DFT with full-weight end tokens, ASFT and the probability-power family on Qwen2.5-Math-1.5B,
# trained on the paper's data, evaluated on its five benchmarks (avg@16), one table and a figure of avg@16 against
# alpha (README.md). SFT and DFT are Table 1's runs (same folders: a finished run does nothing when started again).
source "$(dirname "$0")/../common.sh"
MODEL=${MODEL:-qwen2.5-math-1.5b}
read_preset "$MODEL"
# prob_power's alphas: -> 0 is SFT's gradient, 1 is DFT's, 2 down-weights unlikely tokens more
ALPHAS=${ALPHAS:-"0.1 0.5 1 2"}
# ASFT's KL weight (the ASFT authors' README: 0.05) and the reference's stored top-K (docs/beyond_dft.md)
KL_BETA=${KL_BETA:-0.05}
TOPK=${TOPK:-64}
# the targets that keep weight 1 in "DFT + end tokens": the tokenizer's eos and the chat template's end of turn
END_TOKENS=${END_TOKENS:-"[eos,end_of_turn]"}

prepare_numina_for "$SETTING"
data=$(numina_for "$SETTING")
common=(preset="$MODEL" setting="$SETTING")
table_runs=()
alpha_runs=()

# train_and_evaluate NAME LABEL OVERRIDES...: one method's run, evaluation and table row
train_and_evaluate() {
  local name=$1 label=$2; shift 2
  train "$RUNS/train/$name" "${common[@]}" "$@"
  evaluate "$RUNS/train/$name" "$RUNS/eval/$name"
  table_runs+=(--run "$label=$RUNS/eval/$name/summary.json")
}

train_and_evaluate "$MODEL-sft" SFT loss.name=sft data.train_files="$data" "$@"
train_and_evaluate "$MODEL-dft" DFT loss.name=dft data.train_files="$data" "$@"
train_and_evaluate "$MODEL-dft-end_tokens" "DFT + end tokens" loss.name=dft loss.full_weight_tokens="$END_TOKENS" \
  data.train_files="$data" "$@"
# ASFT: the starting model's top-K per target token, once; the loss reads logits, so no fused kernels
scored="${data%.parquet}.top$TOPK.$MODEL.parquet"
score "$scored" "${common[@]}" data.train_files="$data" ref.topk="$TOPK"
train_and_evaluate "$MODEL-asft" "ASFT (beta $KL_BETA)" loss.name=asft loss.kl_beta="$KL_BETA" \
  model.use_fused_kernels=False data.train_files="$scored" "$@"
for alpha in $ALPHAS; do
  train_and_evaluate "$MODEL-prob_power-$alpha" "prob_power (alpha $alpha)" loss.name=prob_power \
    loss.power_alpha="$alpha" data.train_files="$data" "$@"
  alpha_runs+=(--run "prob_power@$alpha=$RUNS/eval/$MODEL-prob_power-$alpha/summary.json")
done
run python -m dft ablations beyond "${table_runs[@]}" --out "$RUNS/beyond_dft.md"
run python -m dft figures sweep --param alpha "${alpha_runs[@]}" --model "$PAPER_NAME" --setting "$SETTING" \
  --out "$RUNS/figures/beyond_dft_alpha.$FIGURE_FORMAT"
