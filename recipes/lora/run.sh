#!/usr/bin/env bash
# LoRA versus full fine-tuning, with SFT and DFT: the same NuminaMath-CoT data and schedule as Table 1, with
# verl's LoRA (model.lora_rank) and a larger learning rate (README.md). Full fine-tuning runs are Table 1's.
source "$(dirname "$0")/../common.sh"
MODELS=${MODELS:-qwen2.5-math-1.5b}
LOSSES=${LOSSES:-"sft dft"}
LORA_RANK=${LORA_RANK:-64}
LORA_ALPHA=${LORA_ALPHA:-128}
LORA_LR=${LORA_LR:-2e-4}

prepare_numina
for model in $MODELS; do
  for loss in $LOSSES; do
    train "$RUNS/train/$model-lora-$loss" preset="$model" loss.name="$loss" data.train_files="$DATA/numina/train.parquet" \
      model.lora_rank="$LORA_RANK" model.lora_alpha="$LORA_ALPHA" model.target_modules=all-linear \
      optim.lr="$LORA_LR" "$@"
    # verl saves LoRA weights PEFT-wrapped: merge them into a plain model (verl's model merger) to evaluate
    run python -m dft checkpoints merge "$RUNS/train/$model-lora-$loss"
    evaluate "$RUNS/train/$model-lora-$loss" "$RUNS/eval/$model-lora-$loss"
  done
done
