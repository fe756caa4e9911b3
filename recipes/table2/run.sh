#!/usr/bin/env bash
# Table 2: importance-weighted SFT (sequence level, the paper's baseline) vs DFT on the five models (README.md).
# The DFT runs are Table 1's (same folders: a finished run resumes at its end and does nothing).
# Training and scoring run with setting=paper (SETTING=corrected for ours).
source "$(dirname "$0")/../common.sh"
MODELS=${MODELS:-$PAPER_MODELS}
# sequence (clip(exp(mean log p/q), 0, 16)) or token (clip(p/q, 0.2, 1.8))
IW_LEVEL=${IW_LEVEL:-sequence}

prepare_numina_for "$SETTING"
data=$(numina_for "$SETTING")
table_runs=()
for model in $MODELS; do
  # reference log-probs of the starting model, once per model (its tokenizer and the data format decide the tokens)
  scored="${data%.parquet}.ref.$model.parquet"
  score "$scored" preset="$model" setting="$SETTING" data.train_files="$data"
  train "$RUNS/train/$model-iw_sft" preset="$model" setting="$SETTING" loss.name=iw_sft loss.iw_level="$IW_LEVEL" \
    data.train_files="$scored" "$@"
  train "$RUNS/train/$model-dft" preset="$model" setting="$SETTING" loss.name=dft data.train_files="$data" "$@"
  for loss in iw_sft dft; do
    evaluate "$RUNS/train/$model-$loss" "$RUNS/eval/$model-$loss"
  done
  read_preset "$model"
  table_runs+=(--run "$PAPER_NAME/iw-SFT=$RUNS/eval/$model-iw_sft/summary.json"
               --run "$PAPER_NAME/DFT=$RUNS/eval/$model-dft/summary.json")
done
tables table2 "${table_runs[@]}"
