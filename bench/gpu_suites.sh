#!/usr/bin/env bash
# The three quality suites' GPU variants on one lent GPU (an H200: 16 cores, ~140 GB), in one
# command and at most ~10 minutes: each suite runs its config's gpu: settings (bigger students,
# more steps) as parallel processes, one per task and seed, under a time cap. A suite cut off by
# its cap keeps every finished cell (results say "complete": false) and re-running this script
# resumes it. Results: bench/results/quality-<suite>-gpu.json, reports in runs/bench/<suite>-gpu/.
#
#   bash bench/gpu_suites.sh            # long (the headline), then synthetic, then real
#   JOBS=12 bash bench/gpu_suites.sh    # processes at once (default 12)
set -u
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1
JOBS=${JOBS:-12}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || echo "warning: no nvidia-smi; running on what torch finds"
run() {  # suite, seconds
  timeout --signal=INT "$2" python bench/quality.py --suite "$1" --gpu --jobs "$JOBS"
  echo "suite $1: exit $? (124: cut off at $2 s; re-run to resume)"
}
run long 300
run synthetic 180
run real 90
