#!/usr/bin/env bash
# LoRA versus full fine-tuning, with SFT and DFT: Table 1's NuminaMath-CoT data, setting and schedule, with verl's
# LoRA (model.lora_rank) and a larger learning rate (README.md). The full fine-tuning runs are Table 1's (the same
# commands and folders: trained and evaluated here only if Table 1 has not done it). Arguments are Hydra overrides
# for every training run; training runs with setting=paper (SETTING=corrected for ours).
source "$(dirname "$0")/../common.sh"
MODELS=${MODELS:-qwen2.5-math-1.5b}
LOSSES=${LOSSES:-"sft dft"}
LORA_RANK=${LORA_RANK:-64}
LORA_ALPHA=${LORA_ALPHA:-128}
LORA_LR=${LORA_LR:-2e-4}

prepare_numina_for "$SETTING"
data=$(numina_for "$SETTING")
table_runs=()
for model in $MODELS; do
  read_preset "$model"
  for loss in $LOSSES; do
    full="$model-$loss" lora="$model-lora-$loss"
    train "$RUNS/train/$full" preset="$model" setting="$SETTING" loss.name="$loss" data.train_files="$data" "$@"
    evaluate "$RUNS/train/$full" "$RUNS/eval/$full"
    train "$RUNS/train/$lora" preset="$model" setting="$SETTING" loss.name="$loss" data.train_files="$data" \
      model.lora_rank="$LORA_RANK" model.lora_alpha="$LORA_ALPHA" model.target_modules=all-linear \
      optim.lr="$LORA_LR" "$@"
    # verl saves LoRA weights PEFT-wrapped: merge the last step into a plain model (verl's model merger), which
    # evaluating the run folder then reads (global_step_<N>/merged)
    last=$(cat "$RUNS/train/$lora/latest_checkpointed_iteration.txt" 2>/dev/null || echo N)
    step "$RUNS/train/$lora/global_step_$last/merged" python -m dft checkpoints merge "$RUNS/train/$lora"
    evaluate "$RUNS/train/$lora" "$RUNS/eval/$lora"
    table_runs+=(--run "$PAPER_NAME/${loss^^}/full=$RUNS/eval/$full/summary.json"
      --run "$PAPER_NAME/${loss^^}/lora=$RUNS/eval/$lora/summary.json")
  done
done
run python -m dft ablations lora "${table_runs[@]}" --out "$RUNS/lora.md"
