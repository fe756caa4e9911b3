# Sourced by every recipe's run.sh: shared knobs, the paper's model list, and the command runners.
# Every knob is an environment variable with a default; DRY_RUN=1 prints each command instead of running it.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

DRY_RUN=${DRY_RUN:-0}
# cluster (GPU nodes, the paper's sizes) or tiny (the same steps at toy scale on a CPU: recipes/scale_tiny.sh sets
# the sizes and sources; SCALE=tiny RUNS=/tmp/toy bash recipes/table1/run.sh)
SCALE=${SCALE:-cluster}
case "$SCALE" in
  cluster) ;;
  tiny) source "$REPO/recipes/scale_tiny.sh" ;;
  *) echo "error: SCALE: unknown value '$SCALE' (valid: cluster, tiny)" >&2; exit 2 ;;
esac
# where prepared data and runs (checkpoints, evaluations, tables, figures) go
DATA=${DATA:-data}
RUNS=${RUNS:-runs}
# GPUs per node for training (torchrun) and evaluation (vLLM replicas, one GPU each)
NPROC_PER_NODE=${NPROC_PER_NODE:-8}
EVAL_BACKEND=${EVAL_BACKEND:-vllm}
EVAL_GPUS=${EVAL_GPUS:-$NPROC_PER_NODE}
# the paper's evaluation: avg@16, temperature 1.0, 4096 new tokens (configs/eval.yaml); fewer for a quick look
EVAL_SAMPLES=${EVAL_SAMPLES:-16}
# the grader of every evaluation: paper (the paper's Qwen2.5-Math harness, as its tables were graded) or ours
# (math-verify); the other one regrades the same responses into OUT/regraded-<other>/ (docs/grading.md)
GRADER=${GRADER:-paper}
OTHER_GRADER=$([ "$GRADER" = paper ] && echo ours || echo paper)
# figures: pdf or svg (vector) or png (300 dpi)
FIGURE_FORMAT=${FIGURE_FORMAT:-pdf}
# NuminaMath-CoT training examples (paper: 100,000)
N_TRAIN=${N_TRAIN:-100000}
export DRY_RUN NPROC_PER_NODE
# dft eval's and dft data rft's backend layout: EVAL_GPUS vLLM replicas of one GPU each, or one process on the CPU
EVAL_LAYOUT=(backend="$EVAL_BACKEND" data_parallel="$EVAL_GPUS" gpus_per_replica=1)
[ "$EVAL_BACKEND" = hf ] && EVAL_LAYOUT=(backend=hf data_parallel=1 gpus_per_replica=0)
# what the scale adds (SCALE=tiny: recipes/scale_tiny.sh): to evaluations, tables and figures, and to RL and sampling
declare -p SCALE_EVAL >/dev/null 2>&1 || SCALE_EVAL=() SCALE_REPORT=() SCALE_RL=() SCALE_RFT=() SCALE_NUMINA=() SCALE_CFT=()
# scale_train_args OVERRIDES...: sets SCALE_TRAIN, what the scale adds to a training or scoring command (cluster: none)
declare -F scale_train_args >/dev/null || scale_train_args() { SCALE_TRAIN=(); }

# The paper's models: the presets with a model card (configs/preset/, python -m dft presets --paper).
PAPER_MODELS=$(python -m dft presets --paper --field name | tr '\n' ' ')

# run CMD...: run it, or print it (shell-quoted, one line) under DRY_RUN=1.
run() {
  if [ "$DRY_RUN" = 1 ]; then printf '%q ' "$@"; echo; else "$@"; fi
}

# step OUT CMD...: run CMD, which writes OUT, once: a step OUT records as finished with this command is skipped, an
# unfinished one runs again (and resumes its own work), another command for OUT is refused (dft/cli/recipe_steps.py).
# The recipe's knobs are claimed before its first step (begin_recipe).
step() {
  local out=$1 status=0; shift
  # a dry run prints the command; a launcher (bash scripts/...) is run, to print the command it would launch
  if [ "$DRY_RUN" = 1 ]; then if [ "$1" = bash ]; then "$@"; else run "$@"; fi; return; fi
  [ -n "${RECIPE_BEGUN:-}" ] || begin_recipe
  python -m dft recipes step begin "$out" -- "$@" || status=$?
  if [ "$status" = 3 ]; then echo "finished before: $out" >&2; return 0; fi
  if [ "$status" != 0 ]; then exit "$status"; fi
  "$@"
  python -m dft recipes step done "$out" -- "$@"
}

# claim_knobs: the recipe's knobs (each NAME=${NAME:-...} of run.sh, common.sh and the scale's file) in
# $RUNS/recipes/<recipe>.json; a recipe started again into the same RUNS with other knobs is refused, naming them.
claim_knobs() {
  local files=("$0" "$REPO/recipes/common.sh") names name pairs=()
  [ "$SCALE" = cluster ] || files+=("$REPO/recipes/scale_$SCALE.sh")
  names=$(grep -ohE '^[[:space:]]*[A-Z_][A-Z0-9_]*=\$\{[A-Z_][A-Z0-9_]*:-' "${files[@]}" | grep -oE '[A-Z_][A-Z0-9_]*' | sort -u)
  for name in $names; do pairs+=("$name=${!name-}"); done
  python -m dft recipes claim "$RUNS" "$(basename "$(dirname "$0")")" "${pairs[@]}"
}

# begin_recipe: before the first step, the knobs are claimed and the scale prepares its sources (SCALE=tiny)
begin_recipe() {
  RECIPE_BEGUN=1
  claim_knobs
  if declare -F scale_begin >/dev/null; then scale_begin; fi
}

# train OUT_DIR OVERRIDES...: dft train under torchrun (scripts/train.sh), checkpoints in OUT_DIR.
train() {
  local out=$1; shift
  scale_train_args "$@"
  step "$out" bash scripts/train.sh trainer.default_local_dir="$out" "$@" "${SCALE_TRAIN[@]}"
}

# score OUTPUT OVERRIDES...: reference log-probs of data.train_files by model.path (dft.train.ref_scoring).
score() {
  local output=$1; shift
  scale_train_args "$@"
  COMMAND=ref_logprobs step "$output" bash scripts/train.sh ref.output="$output" "$@" "${SCALE_TRAIN[@]}"
}

# evaluate MODEL OUT_DIR [OVERRIDES...]: the paper's protocol on its five benchmarks (dft eval), graded by $GRADER,
# then regraded by the other grader (dft regrade); MODEL is a hub id, a Hugging Face folder or a verl
# checkpoint folder (its latest step).
evaluate() {
  local model=$1 out=$2; shift 2
  step "$out" python -m dft eval model="$model" out="$out" "${EVAL_LAYOUT[@]}" sampling.n="$EVAL_SAMPLES" \
    grader="$GRADER" "${SCALE_EVAL[@]}" "$@"
  step "$out/regraded-$OTHER_GRADER" python -m dft regrade "$out" --grader "$OTHER_GRADER"
}

# tables TABLE --run MODEL/METHOD=DIR/summary.json...: the table of $GRADER's numbers ($RUNS/TABLE.md) and, beside
# it, the same responses graded by the other grader ($RUNS/TABLE.<other>.md).
tables() {
  local table=$1; shift
  run python -m dft tables "$table" "$@" "${SCALE_REPORT[@]}" --out "$RUNS/$table.md"
  run python -m dft tables "$table" "${@/%summary.json/regraded-$OTHER_GRADER/summary.json}" "${SCALE_REPORT[@]}" \
    --out "$RUNS/$table.$OTHER_GRADER.md"
}

# The paper's rows train with setting=paper (configs/setting/paper.yaml: the official normalisation, data format,
# bf16 master weights, micro-batch 4) on the official prep's rows; SETTING=corrected trains them with ours instead.
SETTING=${SETTING:-paper}
# every knob set in the environment (MODELS, MODEL, SETTING, LOSSES, counts, choices) checked once, before any step
python -m dft recipes knobs
# prepare_numina_paper: the official code's data, the first N_TRAIN NuminaMath-CoT rows in the official format.
prepare_numina_paper() {
  step "$DATA/numina-paper" python -m dft data numina --out "$DATA/numina-paper" --format official --n "$N_TRAIN" \
    --selection first "${SCALE_NUMINA[@]}"
}

# prepare_numina: N_TRAIN random NuminaMath-CoT rows with a boxed answer, chat format (setting=corrected's data,
# and the problems rejection sampling and RL start from).
prepare_numina() {
  step "$DATA/numina" python -m dft data numina --out "$DATA/numina" --n "$N_TRAIN" --selection random --seed 0 \
    --on-bad-row skip "${SCALE_NUMINA[@]}"
}

# numina_for SETTING: the prepared NuminaMath-CoT file a setting trains on (after prepare_numina_for SETTING).
numina_for() {
  if [ "$1" = paper ]; then echo "$DATA/numina-paper/train.parquet"; else echo "$DATA/numina/train.parquet"; fi
}

prepare_numina_for() {
  if [ "$1" = paper ]; then prepare_numina_paper; else prepare_numina; fi
}

# read_preset PRESET: sets HUB_ID (the model the preset trains, its model.path) and PAPER_NAME (its name in the
# paper's tables), as the presets themselves say (python -m dft presets, asked once): a new preset needs nothing here.
declare -A PRESET_HUB_ID=() PRESET_PAPER_NAME=()
read_preset() {
  if [ ${#PRESET_PAPER_NAME[@]} = 0 ]; then
    local name hub paper
    while read -r name && read -r hub && read -r paper; do
      PRESET_HUB_ID[$name]=$hub PRESET_PAPER_NAME[$name]=$paper
    done < <(python -m dft presets --field name --field hub_id --field paper_name)
  fi
  if [ -z "${PRESET_PAPER_NAME[$1]+known}" ]; then python -m dft presets "$1" >/dev/null; return 1; fi
  HUB_ID=${PRESET_HUB_ID[$1]} PAPER_NAME=${PRESET_PAPER_NAME[$1]}
  # at toy scale, the preset's tiny model (built on first use) stands in for its hub model
  if declare -F scale_model >/dev/null; then scale_model "$1"; fi
  if [ -z "$HUB_ID" ]; then echo "preset $1 has no model.path to evaluate or sample from" >&2; return 1; fi
}
