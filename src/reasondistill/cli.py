"""The command line: a thin layer over ``reasondistill.api``.

Options may come from a YAML file (``--config``); flags given on the command line win. A user
mistake (``UserError``) prints one line and exits with code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from .errors import UserError

S = argparse.SUPPRESS  # options left out stay out of the namespace, so YAML values can fill them

TRAIN_DEFAULTS: dict[str, Any] = {
    "student": "tiny", "split": "train", "n": None, "seed": 0, "hallucination": 0.0, "keep": "correct",
    "format": None, "vocab_size": 600, "lora_r": 0, "chat_template": "auto", "resume": False, "option": [],
    "method_options": {},
    "max_steps": 300, "batch_size": 16, "grad_accum": 1, "lr": None, "max_length": 512,
    "mixed_precision": "auto", "checkpoint_every": 100, "mask_rationale": None,
    "teacher_model": None, "teacher_logits": None, "kd_loss": None, "kd_weight": None, "kd_temperature": None,
}
EVAL_DEFAULTS: dict[str, Any] = {"split": "test", "n": None, "seed": 0, "out": None, "format": None,
                                 "batch_size": 32, "max_new_tokens": None, "no_explain": False,
                                 "similarity_encoder": None}


def _parse_value(text: str) -> Any:
    import yaml
    return yaml.safe_load(text)


def _options(pairs: list[str]) -> dict[str, Any]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise UserError(f"--option expects KEY=VALUE, got '{pair}'")
        key, value = pair.split("=", 1)
        out[key.strip().replace("-", "_")] = _parse_value(value)
    return out


def resolve(args: argparse.Namespace, defaults: dict[str, Any]) -> dict[str, Any]:
    """defaults < YAML config file < flags given on the command line."""
    merged = dict(defaults)
    config_path = getattr(args, "config", None)
    if config_path:
        from .io import read_yaml_mapping
        for key, value in read_yaml_mapping(config_path).items():
            merged[key.replace("-", "_")] = value
    merged.update({k: v for k, v in vars(args).items() if k not in ("func", "config")})
    return merged


def require(options: dict[str, Any], command: str, *keys: str) -> None:
    """Options a command cannot run without, whether they came from flags or the YAML file."""
    for key in keys:
        if not options.get(key):
            raise UserError(f"{command} needs --{key.replace('_', '-')}")


def cmd_train(args: argparse.Namespace) -> None:
    from . import api
    o = resolve(args, TRAIN_DEFAULTS)
    require(o, "train", "method", "data", "out")
    method_options = {**dict(o["method_options"] or {}), **_options(o["option"])}
    if o["mask_rationale"] is not None:
        method_options["mask_rationale"] = float(o["mask_rationale"])
    if o.get("assistant") is not None:  # softcot/semcot: the second model
        method_options["assistant"] = o["assistant"]
    for key in ("teacher_model", "teacher_logits", "kd_loss", "kd_weight", "kd_temperature"):  # token-level KD
        if o[key] is not None:
            method_options[key] = o[key]
    training = {k: o[k] for k in ("max_steps", "batch_size", "grad_accum", "lr", "max_length",
                                  "mixed_precision", "checkpoint_every")}
    training["seed"] = o["seed"]
    record = api.train(o["method"], o["data"], o["out"], student=o["student"], method_options=method_options,
                       training=training, split=o["split"], n=o["n"], seed=o["seed"],
                       hallucination=o["hallucination"], keep=o["keep"], format=o["format"],
                       vocab_size=o["vocab_size"], lora_r=o["lora_r"], resume=o["resume"],
                       chat_template=o["chat_template"])
    summary = record["train"]
    from accelerate import PartialState
    if PartialState().is_main_process:
        print(f"trained {record['method']} on {record['n_train']} examples: {summary.get('steps')} steps, "
              f"final loss {summary.get('final_loss')}, saved to {o['out']}")


def cmd_eval(args: argparse.Namespace) -> None:
    from . import api
    o = resolve(args, EVAL_DEFAULTS)
    require(o, "eval", "data")
    if o.get("server"):  # a student behind an OpenAI-compatible server
        from .remote import evaluate_server
        metrics = evaluate_server(o["server"], o["data"], served_model=o.get("served_model"), model=o.get("model"),
                                  method=o.get("method"), split=o["split"], n=o["n"], seed=o["seed"], out=o["out"],
                                  format=o["format"], max_new_tokens=o["max_new_tokens"],
                                  explain=not o["no_explain"], concurrency=o.get("concurrency") or 8)
        print(json.dumps({k: metrics[k] for k in ("method", "n", "accuracy", "tokens_to_answer", "ms_to_answer",
                                                  "tokens_total", "ms_total", "consistency")}, indent=2))
        return
    require(o, "eval", "model")
    metrics = api.evaluate(o["model"], o["data"], split=o["split"], n=o["n"], seed=o["seed"], out=o["out"],
                           format=o["format"], batch_size=o["batch_size"], max_new_tokens=o["max_new_tokens"],
                           explain=not o["no_explain"], similarity_encoder=o["similarity_encoder"])
    # The core columns (answered beside accuracy, consistency beside its denominator), then whatever
    # the method adds (adaptive's routing, softcot's parameter counts).
    core = ("method", "n", "accuracy", "answered", "tokens_to_answer", "ms_to_answer", "tokens_total", "ms_total",
            "consistency", "rationale_concludes", "rationale_similarity", "rationale_similarity_measure")
    extra = sorted(k for k in metrics if k.endswith(("_fraction", "_mean", "_params")))
    print(json.dumps({k: metrics[k] for k in (*core, *extra) if k in metrics}, indent=2))


def cmd_demo(args: argparse.Namespace) -> None:
    import time

    from . import api
    t0 = time.perf_counter()
    rows = api.demo(args.out, quick=args.quick, hallucination=args.hallucination, seed=args.seed)
    print()
    print(f"{api.DEMO['quick' if args.quick else 'full']['task']}, "
          f"{args.hallucination:.0%} of training rationales hallucinated, clean test set:")
    print(api.comparison_markdown(rows))
    print(f"\nwrote {Path(args.out) / 'comparison.json'} and comparison.md in {time.perf_counter() - t0:.0f} s")


def cmd_tasks_list(args: argparse.Namespace) -> None:
    from .tasks import list_tasks
    for task in list_tasks():
        print(f"{task['name']:<28} {task['kind']:<10} {task['description']}")


def cmd_methods_list(args: argparse.Namespace) -> None:
    from .methods import METHODS
    for name, cls in METHODS.items():
        doc = (cls.__module__ and sys.modules[cls.__module__].__doc__ or "").strip().splitlines()[0]
        print(f"{name:<16} {doc}")


# Commands that live beside what they drive: each module has ``register(subparsers)`` adding its
# subcommand(s) with ``set_defaults(func=...)``. A module not written yet is skipped.
COMMAND_MODULES = [
    "reasondistill.teachers.cli",   # teach
    "reasondistill.serving",        # serve
    "reasondistill.report.cli",     # compare, report
    "reasondistill.inspect",        # inspect-weights
]


def _register_command_modules(sub) -> None:
    import importlib
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue
            raise
        module.register(sub)


def add_data_options(p: argparse.ArgumentParser, data_help: str, split_help: str) -> None:
    """The options that pick the examples: the same names and meaning in train and teach."""
    p.add_argument("--data", help=data_help)
    p.add_argument("--split", help=split_help)
    p.add_argument("--n", type=int, help="use the first N examples")
    p.add_argument("--seed", type=int)
    p.add_argument("--hallucination", type=float, help="synthetic tasks: fraction of corrupted rationales")
    p.add_argument("--format", help="gsm8k, teacher, jsonl, semcot, logic (default: detected)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reasondistill", description="Distil an LLM's reasoning into a small student.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="offline CPU demo: five methods on a synthetic task, one table")
    p.add_argument("--quick", action="store_true", help="fewer steps, same shape (about a minute)")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--hallucination", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("tasks", help="built-in and loadable tasks")
    p.add_argument("action", choices=["list"])
    p.set_defaults(func=cmd_tasks_list)

    p = sub.add_parser("methods", help="the distillation methods")
    p.add_argument("action", choices=["list"])
    p.set_defaults(func=cmd_methods_list)

    p = sub.add_parser("train", help="train a student with a method", argument_default=S)
    p.add_argument("--config", help="YAML file of options (flags override)")
    p.add_argument("--method", help="answer_only, pre_thinking, prefix, post_thinking, pst, ...")
    add_data_options(p, "built-in task (synthetic/coin_flip) or a JSON/JSONL path", "train (default), test or all")
    p.add_argument("--student", help="tiny | micro | small | HF id | local path (default tiny)")
    p.add_argument("--assistant", help="softcot/semcot: the assistant/generator model (run folder or HF id)")
    p.add_argument("--out", help="run folder")
    p.add_argument("--keep", help="correct (default): drop rationales whose teacher answer is wrong; all")
    p.add_argument("--vocab-size", type=int, help="tiny students: tokenizer size (default 600)")
    p.add_argument("--lora-r", type=int, help="train LoRA adapters of this rank instead of all weights")
    p.add_argument("--chat-template", help="auto (default: the student's own template when it has one), "
                                           "none (plain text), or a Jinja template file")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    p.add_argument("--option", action="append", help="method option KEY=VALUE (repeatable)")
    p.add_argument("--mask-rationale", type=float, help="Masked Thought: mask this fraction of rationale inputs")
    p.add_argument("--teacher-model", help="token-level KD from this open teacher (HF id or path; same tokenizer)")
    p.add_argument("--teacher-logits", help="token-level KD from stored top-k teacher logits (.safetensors)")
    p.add_argument("--kd-loss", choices=["forward_kl", "reverse_kl", "jsd", "taid"], help="default forward_kl")
    p.add_argument("--kd-weight", type=float, help="weight of the KD term (default 1)")
    p.add_argument("--kd-temperature", type=float, help="softmax temperature of the KD term (default 1)")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--grad-accum", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--max-length", type=int)
    p.add_argument("--mixed-precision", help="auto, no, bf16, fp16")
    p.add_argument("--checkpoint-every", type=int)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a trained run folder", argument_default=S)
    p.add_argument("--config")
    p.add_argument("--model", help="run folder written by train (with --server: optional, gives method and layout)")
    p.add_argument("--data")
    p.add_argument("--server", help="evaluate the student behind this OpenAI-compatible server (http://host:port)")
    p.add_argument("--served-model", help="with --server: the model id the server serves (default: its only one)")
    p.add_argument("--method", help="with --server and no --model: the student's method (our serve says it itself)")
    p.add_argument("--concurrency", type=int, help="with --server: requests in flight at once (default 8)")
    p.add_argument("--split")
    p.add_argument("--n", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--out")
    p.add_argument("--format")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--no-explain", action="store_true", help="answer-first methods: skip the rationale")
    p.add_argument("--similarity-encoder", help="sentence encoder for rationale_similarity (default: ROUGE-L F1, "
                   "which no student is trained to match)")
    p.set_defaults(func=cmd_eval)
    _register_command_modules(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    argv = sys.argv[1:] if argv is None else argv
    from .processes import cpu_relaunch_command
    if argv[:1] == ["train"] and (relaunch := cpu_relaunch_command(argv)):  # accelerate launch --cpu, N > 1
        import subprocess
        return subprocess.call(relaunch)
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as e:
        print(f"reasondistill: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("reasondistill: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
