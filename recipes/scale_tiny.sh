# The toy scale (SCALE=tiny; sourced by common.sh): every recipe end to end on a 2-core CPU with no network, through
# the same run.sh, common.sh, launchers and commands a cluster runs. Only sizes and sources change, all of them here:
#   models      tiny-cpu is the tiny Base: dft tiny's model pretrained for PRETRAIN_STEPS cross-entropy steps on half
#               of its word problems; a paper preset is a model-faithful tiny model of its card in ../shared/models
#               (its real tokenizer, chat template, special tokens and generation config; two small random layers)
#   data        NuminaMath-CoT and WebInstruct-CFT rows made by code in their real layouts from the other half of the
#               word problems (dft tiny's sources/), prepared by the same dft data commands with --source local
#   training    configs/scale/tiny.yaml: 4 steps of batch 16 on NPROC_PER_NODE=2 processes, the CPU backend
#   evaluation  EVAL_LIMIT problems of each benchmark (the real files in ../shared/data), EVAL_SAMPLES samples of at
#               most EVAL_MAX_NEW_TOKENS tokens, the Hugging Face backend; EVAL_BENCHMARKS=[tiny_math] evaluates on
#               the held-out word problems instead (what a tiny Base can learn)
#   tables      the toy runs shown as deviations from the paper's protocol (marked †, each deviation listed)
# Every knob below can be set as at cluster scale; a recipe's own knobs get toy defaults here.

# word problems dft tiny makes: half pretrain the Base, half are the NuminaMath-CoT and CFT sources
TINY_PROBLEMS=${TINY_PROBLEMS:-4000}
PRETRAIN_STEPS=${PRETRAIN_STEPS:-150}
N_TRAIN=${N_TRAIN:-64}
NPROC_PER_NODE=${NPROC_PER_NODE:-2}
EVAL_BACKEND=${EVAL_BACKEND:-hf}
EVAL_SAMPLES=${EVAL_SAMPLES:-2}
EVAL_LIMIT=${EVAL_LIMIT:-2}
EVAL_MAX_NEW_TOKENS=${EVAL_MAX_NEW_TOKENS:-32}
EVAL_BENCHMARKS=${EVAL_BENCHMARKS:-paper}
FIGURE_FORMAT=${FIGURE_FORMAT:-png}
# the recipes' own knobs: the tiny Base for one-model recipes, it and a faithful Qwen2.5-Math for the model tables
MODEL=${MODEL:-tiny-cpu}
MODELS=${MODELS:-tiny-cpu qwen2.5-math-1.5b}
N_PROBLEMS=${N_PROBLEMS:-48}
N_CFT=${N_CFT:-64}
RL_STEPS=${RL_STEPS:-2}
ROWS=${ROWS:-32}
SAVE_EVERY=${SAVE_EVERY:-2}
STEPS=${STEPS:-4}
LRS=${LRS:-"1e-3 3e-3"}
BASE_LR=${BASE_LR:-1e-3}
BATCH_SIZES=${BATCH_SIZES:-"8 16"}
BASE_BATCH=${BASE_BATCH:-16}
ALPHAS=${ALPHAS:-"0.5 2"}
TOPK=${TOPK:-8}
LORA_RANK=${LORA_RANK:-8}
LORA_ALPHA=${LORA_ALPHA:-16}
SEEDS=${SEEDS:-0}
DIAGNOSE_ROWS=${DIAGNOSE_ROWS:-32}

TINY=$DATA/tiny
SCALE_NUMINA=(--source local --input "$TINY/sources/numina.jsonl")
SCALE_CFT=(--source local --input "$TINY/sources/cft.jsonl")
SCALE_EVAL=(limit="$EVAL_LIMIT" sampling.max_new_tokens="$EVAL_MAX_NEW_TOKENS" benchmarks="$EVAL_BENCHMARKS" hf.batch_size=64
  chunk_size=64)
[[ "$EVAL_BENCHMARKS" == *tiny_math* ]] && SCALE_EVAL+=(data_dir="$TINY/benchmarks")
# rejection sampling: the tiny Base is right on ~2% of its samples, so 16 per problem (not 4) give a dozen accepted
# rows and ~170 DPO pairs from N_PROBLEMS problems, and the offline runs train on batches of 8 of them
SCALE_RFT=(limit="$N_PROBLEMS" sampling.max_new_tokens="$EVAL_MAX_NEW_TOKENS" hf.batch_size=64 sampling.n=16)
SCALE_OFFLINE=(data.train_batch_size=8)
RL_VAL_SIZE=${RL_VAL_SIZE:-16}
# PPO and GRPO: RL_STEPS steps of 16 prompts, each saved, at an actor learning rate that moves a tiny model
RL_LR=${RL_LR:-1e-4}
SCALE_RL=(rl_setting=tiny-cpu trainer.total_training_steps="$RL_STEPS" trainer.save_freq=1
  trainer.max_actor_ckpt_to_keep=1 trainer.max_critic_ckpt_to_keep=1 actor_rollout_ref.actor.optim.lr="$RL_LR")
# GRPO's responses per prompt: the tiny Base earns the reward with ~2% of its samples at temperature 1 (RFT's rate), so
# with the paper's 4 a step of 16 prompts often has no reward at all (every advantage 0); 8 make a reward likelier
SCALE_RL_GRPO=(actor_rollout_ref.rollout.n=8)
# DPO's learning rate (setting=dpo's 1e-6 moves a tiny model nothing in 4 steps)
DPO_LR=${DPO_LR:-1e-4}
SCALE_DPO=(optim.lr="$DPO_LR")
# RL's Ray: an instance of its own, never a running cluster's (scripts/train_rl.sh joins none when RAY_ADDRESS is
# empty; ray.init finds no cluster address in a temp folder of its own, keyed by RUNS)
export RAY_ADDRESS=
export RAY_TMPDIR="/tmp/ray-tiny-$(printf %s "${RUNS:-runs}" | cksum | cut -d' ' -f1)"
SCALE_REPORT=(--allow-deviations --runs-only)
# EVAL_BACKEND=vllm: vLLM's CPU build, in the command's own process, float32, a 256 MiB KV cache; for the faithful
# tiny models only (the tiny Base's 16-wide attention heads are below the 32 vLLM's CPU attention needs)
if [ "$EVAL_BACKEND" = vllm ]; then
  EVAL_LAYOUT=(backend=vllm data_parallel=1 gpus_per_replica=0)
  SCALE_EVAL+=(vllm.dtype=float32 +vllm.kv_cache_memory_bytes=268435456 +vllm.enforce_eager=true)
  export VLLM_ENABLE_V1_MULTIPROCESSING=0
fi

# scale_begin: the tiny model and the toy sources (before the recipe's first step)
scale_begin() {
  step "$TINY" python -m dft tiny --out "$TINY" --n-train "$TINY_PROBLEMS" --n-test 200
}

# scale_model PRESET: sets HUB_ID to the preset's tiny model, built on first use
scale_model() {
  if [ "$1" = tiny-cpu ]; then
    train "$TINY/base" preset=tiny-cpu model.path="$TINY/model" data.train_files="$TINY/data/pretrain.parquet" \
      loss.name=sft optim.lr=3e-3 data.train_batch_size=32 trainer.total_training_steps="$PRETRAIN_STEPS" \
      trainer.save_freq=50
    HUB_ID=$TINY/base/global_step_$PRETRAIN_STEPS/huggingface
  else
    step "$TINY/models/$1" python -m dft model_cards --card "$1" --out "$TINY/models/$1"
    HUB_ID=$TINY/models/$1
  fi
}

# scale_train_args OVERRIDES...: sets SCALE_TRAIN: scale=tiny, and the preset's tiny model unless model.path is given
scale_train_args() {
  local arg preset=
  SCALE_TRAIN=(scale=tiny)
  for arg in "$@"; do
    case $arg in preset=*) preset=${arg#preset=} ;; model.path=*) return 0 ;; esac
  done
  if [ -n "$preset" ]; then
    scale_model "$preset"
    SCALE_TRAIN+=(model.path="$HUB_ID")
  fi
}
