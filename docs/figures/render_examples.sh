#!/usr/bin/env bash
# The example figures in docs/figures/, from tiny CPU runs (about 15 minutes on 2 cores):
#   python -m dft quickstart && bash docs/figures/render_examples.sh
# Starts from the quickstart's Base model and data; fine-tunes it with SFT and DFT (checkpoints every EVERY
# steps, and at a learning rate per sweep point), evaluates every checkpoint on the held-out tiny-math problems
# (greedy, the quickstart's evaluation), scores the fine-tuning data under Base, SFT and DFT, and draws the
# three figures. Finished trainings and evaluations are reused.
set -euo pipefail

QS=${QS:-runs/quickstart}
OUT=${OUT:-runs/figures}
DOCS=${DOCS:-docs/figures}
STEPS=${STEPS:-100}
EVERY=${EVERY:-20}
LR=${LR:-1e-3}
SWEEP_LRS=${SWEEP_LRS:-"3e-4 1e-3 3e-3"}

BASE=$QS/base/ckpt/global_step_150/huggingface
DATA=$QS/tiny/data
TORCHRUN=(python -m torch.distributed.run --standalone --nproc_per_node=2)

# train LOSS LR SAVE_EVERY: fine-tune Base, keeping every checkpoint's HF weights under $OUT/LOSS_lrLR/ckpt
train() {
    local dir=$OUT/$1_lr$2
    [[ -f $dir/ckpt/global_step_$STEPS/huggingface/model.safetensors ]] && return
    mkdir -p "$dir"
    VERL_FILE_LOGGER_PATH=$dir/metrics.jsonl "${TORCHRUN[@]}" -m dft train preset=tiny-cpu loss.name="$1" \
        optim.lr="$2" model.path="$BASE" data.train_files="$DATA/finetune.parquet" \
        data.val_files="$DATA/val.parquet" trainer.total_epochs=100 trainer.total_training_steps="$STEPS" \
        trainer.save_freq="$3" trainer.max_ckpt_to_keep=null trainer.default_local_dir="$dir/ckpt" \
        trainer.logger='[console,file]' 'checkpoint.save_contents=[model,extra,hf_model]' >"$dir/train.log" 2>&1
}

# evaluate MODEL=OUT_DIR ...: each model on tiny-math, summary.json in OUT_DIR (as dft eval writes it)
evaluate() {
    python - "$DATA/test.jsonl" "$@" <<'EOF'
import sys
from dataclasses import asdict
from pathlib import Path

from dft.eval.runner import write_summary
from dft.cli.quickstart.table1 import GREEDY, evaluate_rows

test_jsonl, pairs = Path(sys.argv[1]), [arg.split("=", 1) for arg in sys.argv[2:]]
for model, out in pairs:
    if not (Path(out) / "summary.json").exists():
        results = evaluate_rows({"model": model}, test_jsonl, Path(out), GREEDY)
        info = {"model": model, "backend": "hf", "prompt_template": "chat-cot", "sampling": asdict(GREEDY)}
        write_summary(Path(out), info, {"tiny-math": results["model"]})
EOF
}

# score MODEL OUT: the fine-tuning data's target-token log-probs under MODEL
score() {
    [[ -f $2 ]] && return
    "${TORCHRUN[@]}" -m dft ref_logprobs preset=tiny-cpu model.path="$1" data.train_files="$DATA/finetune.parquet" \
        ref.output="$2" >"$2.log" 2>&1
}

for loss in sft dft; do
    train $loss "$LR" "$EVERY"
    for lr in $SWEEP_LRS; do [[ $lr == "$LR" ]] || train $loss "$lr" "$STEPS"; done
done

pairs=()
for loss in sft dft; do
    mkdir -p "$OUT/dynamics_$loss" && ln -sfn ../eval_base "$OUT/dynamics_$loss/step_0"
    for ((step = EVERY; step <= STEPS; step += EVERY)); do
        pairs+=("$OUT/${loss}_lr$LR/ckpt/global_step_$step/huggingface=$OUT/dynamics_$loss/step_$step")
    done
    for lr in $SWEEP_LRS; do
        [[ $lr == "$LR" ]] || pairs+=("$OUT/${loss}_lr$lr/ckpt/global_step_$STEPS/huggingface=$OUT/sweep_${loss}_lr$lr")
    done
done
evaluate "$BASE=$OUT/eval_base" "${pairs[@]}"

score "$BASE" "$OUT/finetune.base.parquet"
score "$OUT/sft_lr$LR/ckpt/global_step_$STEPS/huggingface" "$OUT/finetune.sft.parquet"
score "$OUT/dft_lr$LR/ckpt/global_step_$STEPS/huggingface" "$OUT/finetune.dft.parquet"

sweep_runs=()
for lr in $SWEEP_LRS; do
    for loss in sft dft; do
        summary=$OUT/sweep_${loss}_lr$lr/summary.json
        [[ $lr == "$LR" ]] && summary=$OUT/dynamics_$loss/step_$STEPS/summary.json
        sweep_runs+=(--run "${loss^^}@$lr=$summary")
    done
done

title=(--model "tiny CPU model" --setting corrected)
python -m dft figures dynamics --run SFT="$OUT/dynamics_sft" --run DFT="$OUT/dynamics_dft" --benchmark tiny-math "${title[@]}" \
    --out "$DOCS/tiny_dynamics.png"
python -m dft figures token_probs --run Base="$OUT/finetune.base.parquet" --run SFT="$OUT/finetune.sft.parquet" \
    --run DFT="$OUT/finetune.dft.parquet" "${title[@]}" --out "$DOCS/tiny_token_probs.png"
python -m dft figures sweep --param lr "${sweep_runs[@]}" --benchmark tiny-math "${title[@]}" --out "$DOCS/tiny_sweep_lr.png"
