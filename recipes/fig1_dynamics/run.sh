#!/usr/bin/env bash
# Figure 1: accuracy against training step, SFT vs DFT on Qwen2.5-Math-1.5B: checkpoints every SAVE_EVERY
# steps, each evaluated, step 0 being the base model (README.md). Arguments are Hydra overrides for training,
# which runs with setting=paper (SETTING=corrected for ours).
source "$(dirname "$0")/../common.sh"
MODEL=${MODEL:-qwen2.5-math-1.5b}
LOSSES=${LOSSES:-"sft dft"}
SAVE_EVERY=${SAVE_EVERY:-50}
# one epoch of N_TRAIN examples at batch 256 (verl drops the last partial batch); the run stops at exactly STEPS
# (total_epochs=2 only lets it reach STEPS if the prep skipped a few bad rows)
STEPS=${STEPS:-$((N_TRAIN / 256))}
# the benchmark the figure plots, or "average" over the five
BENCHMARK=${BENCHMARK:-average}

prepare_numina_for "$SETTING"
read_preset "$MODEL"
# step 0 is the base model's evaluation, Table 1's (the same command and folder: done once for both recipes)
evaluate "$HUB_ID" "$RUNS/eval/$MODEL-base"
figure_runs=()
for loss in $LOSSES; do
  run_dir="$RUNS/train/fig1/$MODEL-$loss"
  # every checkpoint is evaluated: none is deleted (trainer.max_ckpt_to_keep=null, whatever the scale keeps)
  train "$run_dir" preset="$MODEL" setting="$SETTING" loss.name="$loss" data.train_files="$(numina_for "$SETTING")" \
    trainer.save_freq="$SAVE_EVERY" trainer.total_training_steps="$STEPS" trainer.total_epochs=2 \
    trainer.max_ckpt_to_keep=null "$@"
  run mkdir -p "$RUNS/eval/fig1/$loss"
  run ln -sfn "$(realpath -m "$RUNS/eval/$MODEL-base")" "$RUNS/eval/fig1/$loss/step_0"
  for ((step = SAVE_EVERY; step < STEPS + SAVE_EVERY; step += SAVE_EVERY)); do
    ((step > STEPS)) && step=$STEPS  # verl always saves the last step
    evaluate "$run_dir/global_step_$step/huggingface" "$RUNS/eval/fig1/$loss/step_$step"
  done
  figure_runs+=(--run "${loss^^}=$RUNS/eval/fig1/$loss")
done
run python -m dft figures dynamics "${figure_runs[@]}" --benchmark "$BENCHMARK" --model "$PAPER_NAME" \
  --setting "$SETTING" --out "$RUNS/fig1_dynamics.$FIGURE_FORMAT"
