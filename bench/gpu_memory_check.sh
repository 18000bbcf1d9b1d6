#!/usr/bin/env bash
# The GPU variant of the memory benchmark, in one command on a lent GPU machine (about 4 minutes on
# an H200): first the real liger-kernel equivalence test (fused loss and gradients = the plain
# formula, tests/test_liger.py), then a Qwen2.5-0.5B-shaped random-weight student (152k vocabulary,
# bf16 autocast), batch 8 at sequence 2048: ours (chunked), ours with liger, the plain full-logits
# formula and TRL's SFTTrainer. The machine has no internet: liger-kernel must be installed already
# or its wheel be in $LIGER_WHEELS (default shared/wheels; `pip download liger-kernel==0.8.5 --no-deps`);
# without it the liger test and row are skipped with a note.
# Writes bench/results/memory-cuda.json (and a copy under $OUT when the device runner sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
wheels="${LIGER_WHEELS:-shared/wheels}"
if ! python -c "import liger_kernel" 2>/dev/null && ls "$wheels"/liger_kernel-0.8.5-*.whl >/dev/null 2>&1; then
    pip install --no-index --no-deps -q "$wheels"/liger_kernel-0.8.5-*.whl  # triton comes with CUDA torch
fi
impls=(ours plain trl)
if python -c "import liger_kernel.transformers.functional" 2>/dev/null; then
    python -m pytest -q -rs tests/test_liger.py
    impls=(ours liger plain trl)
else
    echo "note: liger-kernel not installed: no liger equivalence test, no liger row"
fi
python bench/memory.py --device cuda --timeout 500 --impl "${impls[@]}" "$@"
if [ -n "${OUT:-}" ]; then cp bench/results/memory-cuda.json "$OUT/"; fi
