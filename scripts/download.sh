#!/usr/bin/env bash
# Everything Table 1 reads from outside a fresh clone, before any GPU time: the paper's five models from the
# Hugging Face hub (into the hub cache, $HF_HOME, where training and evaluation find them by hub id) and the five
# benchmarks exactly as the DFT repository evaluated them (byte for byte, sha256-checked) into BENCHMARK_DIR, the
# layout `python -m dft eval` reads with DFT_DATA_DIR=$BENCHMARK_DIR. NuminaMath-CoT comes with its prep
# (`python -m dft data numina`, the recipes' first step).
# The LLaMA models are gated: accept their licences on the hub first, then `hf auth login` or export HF_TOKEN.
#   bash scripts/download.sh
#   MODELS=qwen2.5-math-1.5b BENCHMARK_DIR=/shared/benchmarks bash scripts/download.sh
#   DRY_RUN=1 bash scripts/download.sh          # print the commands, download nothing
set -euo pipefail
cd "$(dirname "$0")/.."

DRY_RUN=${DRY_RUN:-0}
# presets (configs/preset/) whose model.path to download
MODELS=${MODELS:-$(python -m dft presets --paper --field name | tr '\n' ' ')}
BENCHMARK_DIR=${BENCHMARK_DIR:-data/benchmarks}
# yongliang-wu/DFT, the commit whose math_evaluation/data the benchmark files are copied from
DFT_COMMIT=e153181f71522428ed030f4519702890c699ed6b

run() {
  if [ "$DRY_RUN" = 1 ]; then printf '%q ' "$@"; echo; else "$@"; fi
}

# verify FILE SHA256: stop unless FILE has this sha256 (under DRY_RUN=1, print what would be verified)
verify() {
  if [ "$DRY_RUN" = 1 ]; then echo "verify $1 sha256=$2"; return; fi
  echo "$2  $1" | sha256sum --check --quiet || { echo "$1: not the DFT repository's file (sha256)" >&2; exit 1; }
}

# the presets' hub ids (model.path), read once
hub_ids=$(python -c '
import sys
from dft.models.presets import get_preset
try:
    print(*(get_preset(name).hub_id for name in sys.argv[1:]))
except ValueError as error:
    sys.exit(f"MODELS: {error}")' $MODELS)
for hub_id in $hub_ids; do
  # Meta's repositories also hold the original consolidated checkpoint under original/: not needed
  run hf download "$hub_id" --exclude "original/*"
done

# name here, folder in the DFT repository's math_evaluation/data, sha256 of test.jsonl
while read -r name folder sha256; do
  out=$BENCHMARK_DIR/$name/test.jsonl
  run mkdir -p "$BENCHMARK_DIR/$name"
  run curl -fsSL -o "$out" \
    "https://raw.githubusercontent.com/yongliang-wu/DFT/$DFT_COMMIT/math_evaluation/data/$folder/test.jsonl"
  verify "$out" "$sha256"
done <<'LIST'
math500 math_oai a239272930e5202bf1d5275f7fa475a56687c775a61f1354a6d3371bf9dd7a94
minerva_math minerva_math 0e656b430d3a0a1dab6aa853f453ba3805e28e2cabe4fc72486a897cc09d8ba2
olympiadbench olympiadbench bb8c1e38a16ea9eacb77530315a674d883f267fbff79183effc53681b4fcc416
aime24 aime24 af2b8bd2aa911b6333ad0df32f3ca05c7ae8ed10f1731f4372c8ae26990bf7ac
amc23 amc23 43707e1ca784602d8479de24ee8ce36609dbebc46dd152b0b12a46611aa898a4
LIST
