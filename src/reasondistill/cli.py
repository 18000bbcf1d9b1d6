"""The command line: a thin layer over ``reasondistill.api``.

Each command's flags are made from its option definition (commands.py, options.py), so flags,
``--config`` YAML keys and API keywords are the same names, checked the same way; flags given on
the command line win over the file. A user mistake (``UserError``, a bad flag included) prints one
line and exits with code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .errors import UserError


def cmd_train(args: argparse.Namespace) -> None:
    from .commands import TrainOptions
    from .options import parse_command
    options = parse_command(TrainOptions, args)  # every key, type and range checked before any work
    from . import api
    record = api.run_train(options)
    summary = record["train"]
    from accelerate import PartialState
    if PartialState().is_main_process:
        print(f"trained {record['method']} on {record['n_train']} examples: {summary.get('steps')} steps, "
              f"final loss {summary.get('final_loss')}, saved to {options.out}")


def cmd_eval(args: argparse.Namespace) -> None:
    from .commands import EvalOptions
    from .options import parse_command
    options = parse_command(EvalOptions, args)
    if options.server:  # a student behind an OpenAI-compatible server
        from .remote import evaluate_server
        o = options
        metrics = evaluate_server(o.server, o.data, served_model=o.served_model, model=o.model, method=o.method,
                                  split=o.split, n=o.n, seed=o.seed, out=o.out, format=o.format,
                                  max_new_tokens=o.max_new_tokens, explain=o.explain, concurrency=o.concurrency)
        print(json.dumps({k: metrics[k] for k in ("method", "n", "accuracy", "tokens_to_answer", "ms_to_answer",
                                                  "tokens_total", "ms_total", "consistency")}, indent=2))
        return
    if not options.model:
        raise UserError("eval needs --model (or 'model:' in --config), or --server")
    from . import api
    metrics = api.run_evaluate(options)
    if "budgets" in metrics:  # a sweep: one line per budget
        print(json.dumps(metrics["budgets"], indent=2))
        return
    # The core columns (answered beside accuracy, consistency beside its denominator), then whatever
    # the method adds (adaptive's routing, softcot's parameter counts).
    core = ("method", "n", "accuracy", "answered", "tokens_to_answer", "ms_to_answer", "tokens_total", "ms_total",
            "consistency", "rationale_concludes", "rationale_similarity", "rationale_similarity_measure")
    extra = sorted(k for k in metrics if k.endswith(("_fraction", "_mean", "_params")))
    print(json.dumps({k: metrics[k] for k in (*core, *extra) if k in metrics}, indent=2))


def cmd_demo(args: argparse.Namespace) -> None:
    import time

    from .commands import DemoOptions
    from .options import parse_command
    o = parse_command(DemoOptions, args)
    from . import api
    t0 = time.perf_counter()
    rows = api.demo(**o.as_dict())
    print()
    print(f"{api.DEMO['quick' if o.quick else 'full']['task']}, "
          f"{o.hallucination:.0%} of training rationales hallucinated, clean test set:")
    print(api.comparison_markdown(rows))
    print(f"\nwrote {Path(o.out) / 'comparison.json'} and comparison.md in {time.perf_counter() - t0:.0f} s")


def cmd_tasks_list(args: argparse.Namespace) -> None:
    from .tasks import list_tasks
    for task in list_tasks():
        print(f"{task['name']:<28} {task['kind']:<10} {task['description']}")


def _method_doc(cls) -> str:
    return (cls.__module__ and sys.modules[cls.__module__].__doc__ or "").strip()


def cmd_methods(args: argparse.Namespace) -> None:
    from .methods import METHODS, get_method_class
    from .options import describe
    if args.action == "list":
        if args.name:
            raise UserError("methods list takes no name; use `methods show NAME`")
        for name, cls in METHODS.items():
            print(f"{name:<16} {_method_doc(cls).splitlines()[0]}")
        return
    if not args.name:
        raise UserError("methods show needs a method name (see `reasondistill methods list`)")
    cls = get_method_class(args.name)
    print(f"{args.name}: {_method_doc(cls)}\n")
    print("options (--option KEY=VALUE, or method_options: in --config):")
    print("\n".join(describe(cls.Options)))
    if cls.token_layout is not None:  # the student reads the batch's tokens: the trainer can add KD
        from .commands import TrainConfig
        from .kd import KDConfig
        kd = {k: TrainConfig.model_fields[k] for k in KDConfig.keys()}
        print("\ntoken-level KD (the trainer's; as train flags or among these options):")
        print("\n".join(f"  {k:<22} {f.default!r:<20} {f.description or ''}" for k, f in kd.items()))


# Commands that live beside what they drive: each module has ``register(subparsers)`` adding its
# subcommand(s) with ``set_defaults(func=...)``. A module not written yet is skipped.
COMMAND_MODULES = [
    "reasondistill.teachers.cli",   # teach
    "reasondistill.serving",        # serve
    "reasondistill.report.cli",     # compare, report
    "reasondistill.kpod_weights",   # inspect-weights (kpod)
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


def build_parser() -> argparse.ArgumentParser:
    from .commands import DemoOptions, EvalOptions, TrainOptions
    from .options import Parser, add_flags
    parser = Parser(prog="reasondistill", description="Distil an LLM's reasoning into a small student.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="offline CPU demo: five methods on a synthetic task, one table")
    add_flags(p, DemoOptions)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("tasks", help="built-in and loadable tasks")
    p.add_argument("action", choices=["list"])
    p.set_defaults(func=cmd_tasks_list)

    p = sub.add_parser("methods", help="the distillation methods: list, or show NAME (its options)")
    p.add_argument("action", choices=["list", "show"])
    p.add_argument("name", nargs="?", help="show: the method")
    p.set_defaults(func=cmd_methods)

    p = sub.add_parser("train", help="train a student with a method")
    add_flags(p, TrainOptions)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a trained run folder")
    add_flags(p, EvalOptions)
    p.set_defaults(func=cmd_eval)
    _register_command_modules(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    argv = sys.argv[1:] if argv is None else argv
    try:
        from .processes import cpu_relaunch_command
        if argv[:1] == ["train"] and (relaunch := cpu_relaunch_command(argv)):  # accelerate launch --cpu, N > 1
            import subprocess
            return subprocess.call(relaunch)
        args = build_parser().parse_args(argv)
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
