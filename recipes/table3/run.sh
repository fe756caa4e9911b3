#!/usr/bin/env bash
# Table 3: Qwen2.5-Math-1.5B in the offline setting (RFT data: 4 samples on 10k problems, verified; SFT, iw-SFT
# and DFT on it; DPO on its pairs) and online (PPO, GRPO), beside Base/SFT/iw-SFT/DFT of Tables 1-2 (README.md).
# RFT, iw-SFT and DFT on the samples train with setting=paper (SETTING=corrected for ours); DPO with setting=dpo.
source "$(dirname "$0")/../common.sh"
MODEL=${MODEL:-qwen2.5-math-1.5b}
# problems sampled for RFT/DPO and given to PPO/GRPO (paper: 10,000)
N_PROBLEMS=${N_PROBLEMS:-10000}
RL_ALGOS=${RL_ALGOS:-"ppo grpo"}
read_preset "$MODEL"
hub=$HUB_ID
name=$PAPER_NAME
rft="$DATA/rft-$MODEL"
rl="$DATA/rl-$MODEL"

# the problems (with a boxed gold answer) that sampling and RL start from: the first N_PROBLEMS, chosen once here;
# RL_VAL_SIZE more rows are verl's validation file
RL_VAL_SIZE=${RL_VAL_SIZE:-500}
prepare_numina
step "$rl" python -m dft data rl --out "$rl" --input "$DATA/numina/train.parquet" --n "$N_PROBLEMS" \
  --selection first --val-size "$RL_VAL_SIZE"
# data format of the RFT training rows: the official one under setting=paper
[ "$SETTING" = paper ] && rft_format=official || rft_format=chat
# offline data: rejection samples of the base model on those problems, verified; (correct, incorrect) pairs for DPO
step "$rft" python -m dft data rft model="$hub" input="$rl/train.parquet" out="$rft" "${EVAL_LAYOUT[@]}" \
  format="$rft_format" "${SCALE_RFT[@]}"
score "$rft/rft.ref.parquet" preset="$MODEL" setting="$SETTING" data.train_files="$rft/rft.parquet"
score "$rft/pairs.ref.parquet" preset="$MODEL" data.train_files="$rft/pairs.parquet"
for loss in sft dft; do
  train "$RUNS/train/$MODEL-rft-$loss" preset="$MODEL" setting="$SETTING" loss.name="$loss" \
    data.train_files="$rft/rft.parquet" "${SCALE_OFFLINE[@]}" "$@"
done
train "$RUNS/train/$MODEL-rft-iw_sft" preset="$MODEL" setting="$SETTING" loss.name=iw_sft \
  data.train_files="$rft/rft.ref.parquet" "${SCALE_OFFLINE[@]}" "$@"
# (at toy scale, DPO_LR wins over an optim.lr among the arguments, which sets the other offline runs' rate)
train "$RUNS/train/$MODEL-dpo" preset="$MODEL" setting=dpo data.train_files="$rft/pairs.ref.parquet" \
  "${SCALE_OFFLINE[@]}" "$@" "${SCALE_DPO[@]}"

# online RL: verl's own PPO/GRPO (scripts/train_rl.sh) on the same problems, rewarded by math-verify; the actor's
# checkpoints also hold Hugging Face weights, which dft eval finds in the run folder; every rollout, with its
# reward, is kept in the run's rollouts/ folder and every step's metrics in its metrics.jsonl
for algo in $RL_ALGOS; do
  out="$RUNS/train/$MODEL-$algo"
  scale_rl=("${SCALE_RL[@]}")
  [ "$algo" = grpo ] && scale_rl+=("${SCALE_RL_GRPO[@]}")
  step "$out" env ALGO="$algo" MODEL="$hub" DATA_DIR="$rl" GPUS_PER_NODE="$NPROC_PER_NODE" \
    VERL_FILE_LOGGER_PATH="$out/metrics.jsonl" bash scripts/train_rl.sh trainer.default_local_dir="$out" \
    trainer.rollout_data_dir="$out/rollouts" 'trainer.logger=[console,file]' \
    'actor_rollout_ref.actor.checkpoint.save_contents=[model,optimizer,extra,hf_model]' "${scale_rl[@]}"
done

table_runs=(--run "$name/Base=$RUNS/eval/$MODEL-base/summary.json")
evaluate "$hub" "$RUNS/eval/$MODEL-base"
for method in sft:SFT iw_sft:iw-SFT dft:DFT; do  # Tables 1-2's runs on NuminaMath-CoT (run those recipes first)
  summary="$RUNS/eval/$MODEL-${method%%:*}/summary.json"
  if [ "$DRY_RUN" != 1 ] && [ ! -f "$summary" ]; then
    echo "error: no $summary: Table 3's ${method#*:} row is Tables 1-2's run; run recipes/table1 and recipes/table2" \
      "(MODELS including $MODEL) into the same RUNS first" >&2
    exit 2
  fi
  table_runs+=(--run "$name/${method#*:}=$summary")
done
for method in "rft-sft:RFT (offline)" "rft-iw_sft:iw-SFT (offline)" "rft-dft:DFT (offline)" "dpo:DPO (offline)"; do
  evaluate "$RUNS/train/$MODEL-${method%%:*}" "$RUNS/eval/$MODEL-${method%%:*}"
  table_runs+=(--run "$name/${method#*:}=$RUNS/eval/$MODEL-${method%%:*}/summary.json")
done
for algo in $RL_ALGOS; do
  evaluate "$RUNS/train/$MODEL-$algo" "$RUNS/eval/$MODEL-$algo"
  table_runs+=(--run "$name/${algo^^} (online)=$RUNS/eval/$MODEL-$algo/summary.json")
done
tables table3 "${table_runs[@]}"
