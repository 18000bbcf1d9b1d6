"""Training-step time of token-level KD: no KD, an online teacher, and offline top-k logits.

What does white-box distillation cost per step, and how much of it do stored logits save? For each
(student, teacher) pair of tiny LLaMAs sharing one tokenizer, the same post_thinking batches are
trained through the trainer's own ``TrainingModule`` (method loss + KD term, backward, AdamW step):
without KD, with the teacher in memory (one extra forward per step), and with the teacher's top-k
log-probabilities read from a file written once by ``save_teacher_logits``. Step times are medians
over the measured steps, modes interleaved round by round since the machine is shared. Storage per
target token of the logits file is reported too (fp16 value + uint16/int32 id per entry).

    python bench/kd_overhead.py            # about a minute on 2 CPU cores
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from reasondistill.api import student_texts
from reasondistill.io import atomic_write_json
from reasondistill.kd import Distiller, KDConfig, tiny_student_with_tokenizer
from reasondistill.methods import get_method
from reasondistill.models import build_tiny_student
from reasondistill.tasks import generate
from reasondistill.training import TrainingModule, build_features, collate, count_targets
from reasondistill.training.teacher_logits import save_teacher_logits

RESULTS = Path(__file__).parent / "results" / "kd_overhead.json"
PAIRS = [("micro", "mini"), ("mini", "tiny"), ("tiny", "small")]
MODES = ["none", "online", "offline"]


def params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def run_pair(student_size: str, teacher_size: str, args, root: Path) -> list[dict]:
    examples = generate("coin_flip", args.n, seed=0)
    teacher, tok = build_tiny_student(teacher_size, student_texts(examples), vocab_size=args.vocab, seed=0)
    teacher_dir = root / f"teacher-{teacher_size}"
    teacher.save_pretrained(teacher_dir)
    tok.save_pretrained(teacher_dir)
    t0 = time.perf_counter()
    stored = save_teacher_logits(str(teacher_dir), None, root / f"{teacher_size}.logits.safetensors", k=args.k,
                                 method="post_thinking", examples=examples, device=args.device, progress=False)
    save_seconds = time.perf_counter() - t0
    options = {"none": {}, "online": {"teacher_model": str(teacher_dir)}, "offline": {"teacher_logits": stored["path"]}}
    runs = {}
    for mode in MODES:
        method = get_method("post_thinking")
        model = tiny_student_with_tokenizer(student_size, tok, seed=1).to(args.device)
        kd = Distiller(KDConfig.from_options(options[mode]), tok) if options[mode] else None
        module = TrainingModule(model, method, kd).train()
        opt = torch.optim.AdamW(module.parameters(), lr=1e-3)
        runs[mode] = (module, opt, [])
    features = build_features(get_method("post_thinking"), examples, tok, 512)
    batches = [collate(features[i:i + args.batch_size], tok.pad_token_id)
               for i in range(0, len(features) - args.batch_size + 1, args.batch_size)]
    for step in range(args.warmup + args.steps):
        batch = {k: v.to(args.device) for k, v in batches[step % len(batches)].items()}
        for mode in MODES:  # interleaved, so load changes on the machine hit every mode alike
            module, opt, times = runs[mode]
            if args.device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            module(batch, count_targets(module.method[0], [batch]))["loss"].backward()
            opt.step()
            opt.zero_grad()
            if args.device == "cuda":
                torch.cuda.synchronize()
            if step >= args.warmup:
                times.append(time.perf_counter() - t0)
    tokens = sum(int(b["attention_mask"].sum()) for b in batches) / len(batches)
    base = statistics.median(runs["none"][2])
    rows = []
    for mode in MODES:
        ms = statistics.median(runs[mode][2]) * 1000
        rows.append({"student": student_size, "teacher": teacher_size, "mode": mode,
                     "student_params": params(runs[mode][0].model), "teacher_params": params(teacher),
                     "ms_per_step": round(ms, 2), "overhead": round(ms / (base * 1000), 3),
                     "tokens_per_step": round(tokens, 1),
                     **({"k": stored["k"], "bytes_per_token": stored["bytes_per_token"],
                         "array_bytes_per_token": stored["array_bytes_per_token"],
                         "save_seconds": round(save_seconds, 2)} if mode == "offline" else {})})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default=",".join(f"{s}/{t}" for s, t in PAIRS),
                        help="student/teacher tiny sizes, comma-separated")
    parser.add_argument("--n", type=int, default=64, help="coin-flip examples")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=15, help="measured steps per mode")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--k", type=int, default=32, help="stored top-k")
    parser.add_argument("--vocab", type=int, default=600)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is steadiest when shared)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for pair in args.pairs.split(","):
            student, teacher = pair.split("/")
            rows += run_pair(student, teacher, args, Path(tmp))
    result = {"bench": "kd_overhead", "device": args.device, "threads": args.threads, "batch_size": args.batch_size,
              "steps": args.steps, "k": args.k, "method": "post_thinking", "kd_loss": "forward_kl",
              "machine": platform.platform(), "seconds": round(time.perf_counter() - started, 1), "rows": rows}
    atomic_write_json(args.out, result)
    print("| student | teacher | params s/t | mode | ms/step | vs no KD | bytes/token |")
    print("|---|---|---:|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['student']} | {r['teacher']} | {r['student_params'] / 1e3:.0f}k/{r['teacher_params'] / 1e3:.0f}k | "
              f"{r['mode']} | {r['ms_per_step']:.1f} | {r['overhead']:.2f}x | {r.get('bytes_per_token', '')} |")
    print(f"\nwrote {args.out} in {result['seconds']} s ({args.device}, {args.threads} thread(s), "
          f"batch {args.batch_size}, top-{args.k} logits)")


if __name__ == "__main__":
    from _common import run_main
    run_main(main, __file__)
