#!/usr/bin/env bash
# FSDP through an accelerate config file, checked on a lent GPU machine. accelerate applies FSDP to
# GPU processes only (on CPU processes it trains as plain data parallel; see README), so this check
# needs a GPU. It trains with bench/configs/accelerate_fsdp.yaml on every visible GPU, checks that the
# record says FSDP and the process count, that the loss follows a run without FSDP, that the saved
# student loads with plain from_pretrained and gives the trained model's loss, and that --resume
# continues from an FSDP checkpoint. About 2 minutes on one H200. Exits non-zero on any failed check.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
WORK="${OUT:-runs/gpu-check}"
rm -rf "$WORK/fsdp" "$WORK/single"; mkdir -p "$WORK"
N=$(python -c "import torch; print(torch.cuda.device_count())")
ARGS=(train --method pre_thinking --data synthetic/coin_flip --student small --max-steps 40 --batch-size 16
      --lr 3e-3 --checkpoint-every 20 --mixed-precision bf16)
python -m reasondistill "${ARGS[@]}" --out "$WORK/single" 2>&1 | tail -1
accelerate launch --config_file bench/configs/accelerate_fsdp.yaml --num_processes "$N" \
    -m reasondistill "${ARGS[@]}" --out "$WORK/fsdp" 2>&1 | tail -1
accelerate launch --config_file bench/configs/accelerate_fsdp.yaml --num_processes "$N" \
    -m reasondistill "${ARGS[@]/40/60}" --resume --out "$WORK/fsdp" 2>&1 | tail -1
python - "$WORK" "$N" <<'PY'
import json, sys
from pathlib import Path
import torch
from transformers import AutoModelForCausalLM
work, n = Path(sys.argv[1]), int(sys.argv[2])
rec = json.loads((work / "fsdp" / "reasondistill.json").read_text())["train"]
print("fsdp record:", rec)
assert rec["distributed_type"] == "FSDP", rec
assert rec["num_processes"] == n, rec
assert rec["resumed_from"] == 20 and rec["steps"] == 60, rec  # the last checkpoint before step 40
single = [json.loads(l) for l in (work / "single" / "metrics.jsonl").read_text().splitlines()]
fsdp = [json.loads(l) for l in (work / "fsdp" / "metrics.jsonl").read_text().splitlines()]
print("single:", [r["loss"] for r in single]); print("fsdp:  ", [r["loss"] for r in fsdp])
for a, b in zip(single, fsdp[:len(single)]):
    assert abs(a["loss"] - b["loss"]) < 0.05 * max(1.0, a["loss"]), (a, b)
model = AutoModelForCausalLM.from_pretrained(work / "fsdp").cuda().eval()
tied = model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
ids = torch.randint(3, model.config.vocab_size, (2, 64), device="cuda")
with torch.no_grad():
    loss = float(model(input_ids=ids, labels=ids).loss)
print(f"saved model loads: vocab {model.config.vocab_size}, tied {tied}, loss on random ids {loss:.3f}")
assert torch.isfinite(torch.tensor(loss))
norms = {k: float(v.float().norm()) for k, v in model.state_dict().items()}
assert all(v > 0 for v in norms.values()), [k for k, v in norms.items() if v == 0]
print("FSDP check: all passed")
PY
