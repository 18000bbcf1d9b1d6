#!/usr/bin/env bash
# The GPU variant of the memory benchmark, in one command on a lent GPU machine (about 3 minutes on
# an H200): a Qwen2.5-0.5B-shaped random-weight student (152k vocabulary, bf16 autocast), batch 8 at
# sequence 2048, ours against the plain full-logits formula and TRL's SFTTrainer.
# Writes bench/results/memory-cuda.json (and a copy under $OUT when the device runner sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python bench/memory.py --device cuda --timeout 500 "$@"
if [ -n "${OUT:-}" ]; then cp bench/results/memory-cuda.json "$OUT/"; fi
