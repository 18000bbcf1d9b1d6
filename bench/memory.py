"""Memory benchmark: peak memory and tokens/s of one training step, ours against the plain
full-logits formula and against TRL's SFTTrainer, on the same model and batch.

    python bench/memory.py                  # CPU grid: vocab 600/32k/152k x seq 512/2048, batch 8
    python bench/memory.py --smoke          # one small configuration, to check that it runs
    python bench/memory.py --device cuda    # Qwen2.5-0.5B-shaped student, 152k vocab, bf16, seq 2048

The student has random weights: a LLaMA of hidden size 64 (the "mini" shape) on CPU, a Qwen2.5-0.5B
shape on a GPU, with the vocabulary under test; its tokenizer is a small one trained on the batch's
text (the ids it emits are a subset of any vocabulary, and the cost of a vocabulary lies in the
output layer, which computes every row whatever the ids). The batch is 8 pre_thinking examples, each
made as close to the sequence length as the tokenizer allows without going over, so no layout cuts
or drops any of them; TRL gets the same examples as prompt + completion.

Each (implementation, vocabulary, length) runs in a fresh process: one warm-up step, then the
measured step. On CPU the peak is the process's peak RSS (``ru_maxrss``, warm-up included: both steps
are the same work) and memory is capped with ``RLIMIT_DATA`` (``--cap-gb``) so that a configuration
that would exhaust the machine fails alone ("over the cap") instead; on a GPU it is
``torch.cuda.max_memory_allocated`` over the measured step. Tokens/s counts the real (non-pad) tokens
of the measured step. ``plain`` is the formula every trainer starts from: the model's full-vocabulary
logits for every position in float32, then cross-entropy over the predicted positions.
``ours`` is our trainer on its chunked loss path; ``liger`` (CUDA, ``--impl liger``, needs
``pip install 'reasondistill[liger]'``) the same trainer with ``use_liger_kernel=true``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import provenance, run_main, save_result  # noqa: E402

IMPLS = ("ours", "liger", "plain", "trl")
DEFAULT_IMPLS = {"cpu": ["ours", "plain", "trl"], "cuda": ["ours", "liger", "plain", "trl"]}  # liger: CUDA only
CPU_GRID = {"vocab": [600, 32000, 151936], "seq": [512, 2048]}
CUDA_GRID = {"vocab": [151936], "seq": [2048]}
QWEN_05B = {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
            "num_key_value_heads": 2, "rope_theta": 1_000_000.0, "rms_norm_eps": 1e-6}
MINI = {"hidden_size": 64, "intermediate_size": 192, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 4}
WORDS = ("the coin is flipped again so it shows heads then tails and we count each flip until the last one "
         "which decides whether the answer is yes or no after adding the numbers three seven nine twelve").split()
GOAL_CPU_GB, GOAL_VS_TRL = 2.5, 0.5


# ----- one configuration, in its own process --------------------------------------------------------

def make_batch(seq: int, batch: int):
    """``batch`` pre_thinking examples, each as long as fits in ``seq`` tokens, and their tokenizer."""
    from reasondistill.api import student_texts
    from reasondistill.methods import get_method
    from reasondistill.models import train_tokenizer
    from reasondistill.tasks import Example
    rng = random.Random(0)
    method = get_method("pre_thinking")
    words = [[rng.choice(WORDS) for _ in range(seq * 2)] for _ in range(batch)]
    examples = [Example(id=f"m{i}", question=f"Question {i}: does the coin show heads after all flips?",
                        answer="yes" if i % 2 else "no", answer_type="yesno", rationale=" ".join(w))
                for i, w in enumerate(words)]
    tok = train_tokenizer(student_texts(examples), vocab_size=600)
    fitted = []
    for ex, w in zip(examples, words):
        lo, hi = 1, len(w)  # the most words whose feature fits in seq tokens
        while lo < hi:
            mid = (lo + hi + 1) // 2
            ex.rationale = " ".join(w[:mid])
            lo, hi = (mid, hi) if len(method.features(ex, tok)[0].input_ids) <= seq else (lo, mid - 1)
        ex.rationale = " ".join(w[:lo])
        fitted.append(ex)
    return method, fitted, tok


def make_model(student: str, vocab: int, seq: int, tok):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM
    shape = QWEN_05B if student == "qwen2.5-0.5b" else MINI
    cls, config_cls = (Qwen2ForCausalLM, Qwen2Config) if student == "qwen2.5-0.5b" else (LlamaForCausalLM, LlamaConfig)
    config = config_cls(vocab_size=vocab, max_position_embeddings=max(seq, 2048) + 8, tie_word_embeddings=True,
                        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                        bos_token_id=tok.bos_token_id, **shape)
    torch.manual_seed(0)
    return cls(config)


class Meter:
    """Peak memory and seconds of the measured step."""

    def __init__(self, device: str) -> None:
        import torch
        self.torch, self.cuda = torch, device == "cuda"

    def start(self) -> None:
        gc.collect()
        if self.cuda:
            self.torch.cuda.synchronize()
            self.torch.cuda.empty_cache()
            self.torch.cuda.reset_peak_memory_stats()
        self.t0 = time.perf_counter()

    def stop(self) -> float:
        if self.cuda:
            self.torch.cuda.synchronize()
        return time.perf_counter() - self.t0

    def peak_gb(self) -> float:
        if self.cuda:
            return self.torch.cuda.max_memory_allocated() / 2**30
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def run_ours(model, method, examples, tok, seq: int, device: str, meter: Meter, work: Path,
             liger: str = "false") -> tuple[float, int]:
    """Our trainer; ``ours`` is the chunked loss path, ``liger`` liger-kernel's fused one (CUDA)."""
    from reasondistill.training import TrainConfig, train
    config = TrainConfig(max_steps=1, batch_size=len(examples), lr=1e-4, max_length=seq, checkpoint_every=0,
                         log_every=1, mixed_precision="bf16" if device == "cuda" else "no", warmup_ratio=0.0,
                         use_liger_kernel=liger)
    train(method, model, tok, examples, work / "warm", config, tiny=True, progress=False)
    meter.start()
    summary = train(method, model, tok, examples, work / "step", config, tiny=True, progress=False)
    meter.stop()
    return summary["seconds"], summary["tokens"]


def run_plain(model, method, examples, tok, seq: int, device: str, meter: Meter, work: Path) -> tuple[float, int]:
    import torch
    import torch.nn.functional as F
    from reasondistill.training import build_features, collate
    batch = collate(build_features(method, examples, tok, seq), tok.pad_token_id)
    batch = {k: v.to(device) for k, v in batch.items()}
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    seconds = 0.0
    for step in range(2):
        if step == 1:
            meter.start()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logits = logits[:, :-1].float()  # the whole batch x length x vocab tensor, in float32
        targets = batch["input_ids"][:, 1:].masked_fill(batch["spans"][:, 1:] == 0, -100)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        del logits, loss
        if step == 1:
            seconds = meter.stop()
    return seconds, int(batch["attention_mask"].sum())


def run_trl(model, method, examples, tok, seq: int, device: str, meter: Meter, work: Path) -> tuple[float, int]:
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback
    from trl import SFTConfig, SFTTrainer
    data = Dataset.from_list([{"prompt": method.prompt(ex), "completion": f" {ex.rationale.strip()}\nAnswer: {ex.answer}"}
                              for ex in examples])
    seen = {"tokens": 0, "seconds": 0.0}

    class Step(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 1:  # the second step is measured
                meter.start()
                seen["tokens"] = 0

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                seen["seconds"] = meter.stop()

    class CountingSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, *args, **kwargs):
            seen["tokens"] += int(inputs["attention_mask"].sum())
            return super().compute_loss(model, inputs, *args, **kwargs)

    cuda = device == "cuda"
    args = SFTConfig(output_dir=str(work / "trl"), max_steps=2, per_device_train_batch_size=len(examples),
                     learning_rate=1e-4, max_length=seq, logging_steps=1, save_strategy="no", report_to="none",
                     disable_tqdm=True, bf16=cuda, use_cpu=not cuda, dataloader_num_workers=0, seed=0,
                     gradient_checkpointing=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = CountingSFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok,
                                     callbacks=[Step()])
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    return seen["seconds"], seen["tokens"]


def one(impl: str, vocab: int, seq: int, batch: int, student: str, device: str, work: Path) -> dict:
    import torch
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    method, examples, tok = make_batch(seq, batch)
    model = make_model(student, vocab, seq, tok)
    meter = Meter(device)
    baseline = meter.peak_gb() if device == "cpu" else 0.0
    runner = {"ours": run_ours, "liger": lambda *a: run_ours(*a, liger="true"), "plain": run_plain, "trl": run_trl}[impl]
    seconds, tokens = runner(model, method, examples, tok, seq, device, meter, work)
    return {"impl": impl, "vocab": vocab, "seq": seq, "batch": batch, "status": "ok",
            "peak_gb": round(meter.peak_gb(), 3), "before_steps_gb": round(baseline, 3),
            "step_seconds": round(seconds, 3), "tokens": tokens, "tokens_per_s": round(tokens / seconds, 1),
            "params": sum(p.numel() for p in model.parameters()), "threads": torch.get_num_threads()}


# ----- the grid, each configuration in a fresh process ----------------------------------------------

def spawn(impl: str, vocab: int, seq: int, args, work: Path) -> dict:
    cmd = [sys.executable, __file__, "--one", impl, str(vocab), str(seq), "--batch", str(args.batch),
           "--student", args.student, "--device", args.device, "--threads", str(args.threads),
           "--work", str(work / f"{impl}-{vocab}-{seq}")]
    cap = int(args.cap_gb * 2**30)

    def limit() -> None:  # the child alone fails when it would exhaust the machine
        resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")])}
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout,
                          preexec_fn=limit if args.device == "cpu" else None)
    row = {"impl": impl, "vocab": vocab, "seq": seq, "batch": args.batch}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode == 0 and lines:
        row = json.loads(lines[-1])
    else:
        err = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
        oom = any(s in done.stderr for s in ("can't allocate memory", "out of memory", "MemoryError",
                                              "Cannot allocate memory"))
        row.update(status=f"over the {args.cap_gb:g} GB cap" if oom and args.device == "cpu"
                   else ("out of memory" if oom else "failed"), error=err[:300])
    row["wall_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def goals(rows: list[dict], device: str) -> list[dict]:
    """152k-vocabulary rows: ours' peak against the CPU budget and against TRL's."""
    out = []
    get = {(r["impl"], r["vocab"], r["seq"]): r for r in rows}
    for (impl, vocab, seq), r in get.items():
        if impl != "ours" or vocab < 150_000 or r.get("status") != "ok":
            continue
        trl = get.get(("trl", vocab, seq), {})
        if device == "cpu":
            out.append({"name": f"ours peak RSS, vocab {vocab}, seq {seq}", "value": r["peak_gb"], "op": "<=",
                        "goal": GOAL_CPU_GB, "unit": "GB", "met": r["peak_gb"] <= GOAL_CPU_GB})
        ratio = r["peak_gb"] / trl["peak_gb"] if trl.get("status") == "ok" else None
        goal = GOAL_VS_TRL if device == "cpu" else 0.6
        out.append({"name": f"ours / TRL peak, vocab {vocab}, seq {seq}", "value": ratio, "op": "<=", "goal": goal,
                    "unit": "x", "met": None if ratio is None else ratio <= goal,
                    **({} if trl.get("status") == "ok" else {"note": f"TRL {trl.get('status', 'not run')}"})})
        if device == "cuda" and trl.get("status") == "ok":
            speed = r["tokens_per_s"] / trl["tokens_per_s"]
            out.append({"name": f"ours / TRL tokens/s, vocab {vocab}, seq {seq}", "value": speed, "op": ">=",
                        "goal": 1.2, "unit": "x", "met": speed >= 1.2})
    return out


def merge(files: list[Path], out: Path) -> int:
    """One results file from several runs of this script (e.g. implementations run side by side)."""
    parts = [json.loads(f.read_text()) for f in files]
    result = {k: v for k, v in parts[-1].items() if k not in ("rows", "earlier_runs")}
    rows = {(r["impl"], r["vocab"], r["seq"]): r for part in parts for r in part["rows"]}  # later files win
    order = {name: i for i, name in enumerate(IMPLS)}
    result["rows"] = sorted(rows.values(), key=lambda r: (r["seq"], r["vocab"], order.get(r["impl"], 9), r["impl"]))
    result["earlier_runs"] = [run for part in parts[:-1] for run in part.get("earlier_runs", [])] + [
        {k: part.get(k) for k in ("date", "command", "wall_seconds")} for part in parts[:-1]]
    result["goals"] = goals(result["rows"], result["device"])
    save_result(out, result)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--student", choices=["mini", "qwen2.5-0.5b"], help="default: mini on cpu, qwen2.5-0.5b on cuda")
    parser.add_argument("--vocab", type=int, nargs="+", help="vocabulary sizes (default: the device's grid)")
    parser.add_argument("--seq", type=int, nargs="+", help="sequence lengths (default: the device's grid)")
    parser.add_argument("--impl", choices=IMPLS, nargs="+",
                        help="implementations (default: ours plain trl on cpu; ours liger plain trl on cuda)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per configuration")
    parser.add_argument("--cap-gb", type=float, default=10.0, help="CPU: memory cap of each configuration")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds one configuration may take")
    parser.add_argument("--smoke", action="store_true", help="vocab 600, seq 128: checks that it runs")
    parser.add_argument("--update", action="store_true",
                        help="keep the rows of other implementations already in the results file")
    parser.add_argument("--tag", help="name the rows of this run IMPL-TAG (e.g. the code before a change)")
    parser.add_argument("--out", help="results JSON (default bench/results/memory[-cuda].json; smoke: runs/bench/)")
    parser.add_argument("--merge", nargs="+", metavar="FILE",
                        help="run nothing: combine the rows of these results files (runs made side by side) into --out")
    parser.add_argument("--one", nargs=3, metavar=("IMPL", "VOCAB", "SEQ"), help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.student = args.student or ("qwen2.5-0.5b" if args.device == "cuda" else "mini")
    args.impl = args.impl or DEFAULT_IMPLS[args.device]
    if args.one:
        import torch
        torch.set_num_threads(args.threads)
        impl, vocab, seq = args.one[0], int(args.one[1]), int(args.one[2])
        print(json.dumps(one(impl, vocab, seq, args.batch, args.student, args.device, Path(args.work))))
        return 0
    from reasondistill.errors import UserError
    if args.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise UserError("--device cuda needs a GPU, and torch sees none")
    if args.merge:
        return merge([Path(f) for f in args.merge], Path(args.out or HERE / "results" / "memory.json"))
    grid = {"vocab": [600], "seq": [128]} if args.smoke else dict(CUDA_GRID if args.device == "cuda" else CPU_GRID)
    grid["vocab"], grid["seq"] = args.vocab or grid["vocab"], args.seq or grid["seq"]
    import tempfile
    result = {"kind": "memory", "device": args.device, "smoke": args.smoke, **provenance("memory.py"),
              "params": {"student": args.student, "batch": args.batch, "threads": args.threads, "cap_gb": args.cap_gb,
                         "method": "pre_thinking", "steps": "1 warm-up + 1 measured"}}
    import trl
    result["versions"]["trl"] = trl.__version__
    started = time.perf_counter()
    default = HERE / "results" / ("memory.json" if args.device == "cpu" else "memory-cuda.json")
    out = Path(args.out) if args.out else (Path("runs/bench/memory-smoke.json") if args.smoke else default)
    commit = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    rows = []
    with tempfile.TemporaryDirectory(prefix="rd-memory-") as tmp:
        for seq in grid["seq"]:
            for vocab in grid["vocab"]:
                for impl in args.impl:
                    row = spawn(impl, vocab, seq, args, Path(tmp))
                    rows.append({**row, "impl": f"{impl}-{args.tag}" if args.tag else impl, "commit": commit})
    if args.update and out.exists():  # the other implementations' rows, measured before
        old, mine = json.loads(out.read_text()), {r["impl"] for r in rows}
        rows = [r for r in old["rows"] if r["impl"] not in mine] + rows
        result["earlier_runs"] = old.get("earlier_runs", []) + [{k: old.get(k) for k in ("date", "command", "wall_seconds")}]
    order = {name: i for i, name in enumerate(IMPLS)}
    rows.sort(key=lambda r: (r["seq"], r["vocab"], order.get(r["impl"], len(IMPLS)), r["impl"]))
    result["rows"] = rows
    result["goals"] = goals(rows, args.device)
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    save_result(out, result)
    print(f"\nwrote {out} in {result['wall_seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    run_main(main, __file__)
