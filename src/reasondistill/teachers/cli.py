"""``reasondistill teach`` and ``reasondistill filter``: thin wrappers over :mod:`.run`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import UserError

S = argparse.SUPPRESS
TEACH_DEFAULTS: dict[str, Any] = {
    "split": None, "n": None, "seed": 0, "hallucination": 0.0, "format": None, "base_url": None, "api": None,
    "samples": 1, "temperature": None, "top_p": 1.0, "max_tokens": 256, "concurrency": 8, "timeout": 60.0,
    "max_retries": 6, "backoff": 1.0, "extra_body": None, "few_shot": None, "shots": None, "keep": "correct",
    "no_dedup": False, "store": None, "quiet": False, "save_logits": None, "reasoning": "auto",
    "select": "all-correct", "max_rationale_tokens": None, "batch_api": False, "batch_poll": 30.0,
    "price_in": None, "price_out": None, "style": None, "trace_tokens": None,
}


def _extra_body(value: Any) -> dict | None:
    if value is None or isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as e:
        raise UserError(f"--extra-body is not valid JSON ({e.msg})") from None
    if not isinstance(parsed, dict):
        raise UserError("--extra-body must be a JSON object")
    return parsed


def cmd_teach(args: argparse.Namespace) -> None:
    from ..cli import require, resolve
    from ..rationales import format_selection, format_stats
    from ..tasks import with_style
    from .run import teach
    o = resolve(args, TEACH_DEFAULTS)
    require(o, "teach", "data", "teacher", "out")
    data = with_style(str(o["data"]), o["style"], o["trace_tokens"])  # synthetic/NAME:long=TOKENS
    summary = teach(data, o["teacher"], o["out"], split=o["split"], n=o["n"], seed=o["seed"],
                    hallucination=o["hallucination"], format=o["format"], base_url=o["base_url"], api=o["api"],
                    samples=o["samples"], temperature=o["temperature"], top_p=o["top_p"], max_tokens=o["max_tokens"],
                    concurrency=o["concurrency"], timeout=o["timeout"], max_retries=o["max_retries"],
                    backoff=o["backoff"], extra_body=_extra_body(o["extra_body"]), few_shot=o["few_shot"],
                    shots=o["shots"], keep=o["keep"], dedup=not o["no_dedup"], store=o["store"],
                    progress=not o["quiet"], reasoning=o["reasoning"], select=o["select"],
                    max_rationale_tokens=o["max_rationale_tokens"], batch_api=bool(o["batch_api"]),
                    batch_poll=o["batch_poll"], price_in=o["price_in"], price_out=o["price_out"])
    calls = summary["calls"]
    print(format_stats(summary["stats"], o["price_in"], o["price_out"]))
    if summary["samples"] > 1 and summary["selection"]:
        print(format_selection(summary["selection"], summary["select"]))
    print(f"wrote {summary['stats']['total']['kept']} rationales to {summary['out']} in {summary['seconds']:.1f} s "
          f"({calls['new']} new calls to {calls['teacher']}, {calls['from_store']} from {summary['store']} "
          f"(same teacher), {calls['retries']} retries)")
    if calls["other_teachers_in_store"]:
        others = ", ".join(f"{n} of {t}" for t, n in calls["other_teachers_in_store"].items())
        print(f"the store also holds calls not reused (another teacher or settings): {others}")
    if "cost" in summary:
        print(f"cost: ${summary['cost']['total']:.4f} for all calls of this run's rationales "
              f"(at ${o['price_in'] or 0}/M in, ${o['price_out'] or 0}/M out)")
    if not summary["stats"]["total"]["kept"]:
        print(f"reasondistill: warning: no rationale kept (--keep {o['keep']}); see the statistics above",
              file=sys.stderr)
    elif o["save_logits"]:
        if not str(o["teacher"]).startswith("hf:"):
            raise UserError("--save-logits needs an open teacher (hf:ID_OR_PATH): an API gives no logits")
        from ..kd import logits_path, save_teacher_logits
        saved = save_teacher_logits(o["teacher"].removeprefix("hf:"), summary["out"], logits_path(summary["out"]),
                                    k=int(o["save_logits"]), progress=not o["quiet"])
        print(f"wrote top-{saved['k']} teacher log-probabilities for {saved['tokens']} tokens to {saved['path']} "
              f"({saved['bytes_per_token']:.0f} bytes per token)")


def cmd_filter(args: argparse.Namespace) -> None:
    from ..rationales import format_stats
    from .run import filter_file
    summary = filter_file(args.data, args.out, keep=args.keep, dedup=not args.no_dedup, format=args.format)
    print(format_stats(summary["stats"]))
    print(f"wrote {summary['stats']['total']['kept']} rationales to {summary['out']}")


def register(sub) -> None:
    from ..cli import add_data_options  # (cli imports this module while it builds its parser)
    p = sub.add_parser("teach", help="collect rationales from a teacher LLM (resumable)", argument_default=S)
    p.add_argument("--config", help="YAML file of options (flags override)")
    add_data_options(p, "built-in task (synthetic/coin_flip), hf:NAME or a JSON/JSONL path",
                     "default: all of a file, train of a synthetic or hub task")
    p.add_argument("--teacher", help="openai:MODEL | hf:ID_OR_PATH | scripted")
    p.add_argument("--style", help="synthetic tasks: short (default) or long: reasoning-model traces with checks, "
                                   "detours and backtracking (same as --data synthetic/NAME:long)")
    p.add_argument("--trace-tokens", type=int, help="--style long: trace length in tokens (default 500; 200-2000 "
                                                     "is a reasoning model's range)")
    p.add_argument("--out", help="rationale file to write (JSONL, usable as train --data)")
    p.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (key: OPENAI_API_KEY)")
    p.add_argument("--api", help="chat (default for openai:) or completions")
    p.add_argument("--samples", type=int, help="rationales per question (default 1)")
    p.add_argument("--temperature", type=float, help="default 0, or 0.7 with --samples > 1")
    p.add_argument("--top-p", type=float)
    p.add_argument("--max-tokens", type=int, help="rationale length limit (default 256)")
    p.add_argument("--concurrency", type=int, help="requests in flight (openai) or batch size (hf); default 8")
    p.add_argument("--timeout", type=float, help="seconds per request (default 60)")
    p.add_argument("--max-retries", type=int, help="on 429, 5xx and timeouts (default 6)")
    p.add_argument("--backoff", type=float, help="first retry pause in seconds, doubled each time (default 1)")
    p.add_argument("--extra-body", help="JSON object merged into every request (server-specific fields)")
    p.add_argument("--few-shot", help="file of worked examples (with rationales) to prompt with")
    p.add_argument("--shots", type=int, help="use the first K worked examples (default all)")
    p.add_argument("--keep", help="correct (default): only finished rationales whose answer matches gold; "
                                  "all (truncated ones too, marked)")
    p.add_argument("--reasoning", choices=["auto", "off"],
                   help="auto (default): a reasoning teacher's trace (reasoning_content, reasoning, <think>) "
                        "is the rationale, one call per sample; off: read every response as a plain model's")
    p.add_argument("--select", choices=["all-correct", "shortest-correct", "first-correct"],
                   help="with --samples: keep all correct rationales (default), or one per question")
    p.add_argument("--max-rationale-tokens", type=int, metavar="T", help="drop rationales longer than T teacher tokens")
    p.add_argument("--batch-api", action="store_true",
                   help="openai: teachers: submit through /v1/files + /v1/batches (cheaper, slower; resumable)")
    p.add_argument("--batch-poll", type=float, help="seconds between batch status checks (default 30)")
    p.add_argument("--price-in", type=float, help="dollars per million prompt tokens (adds cost to the summary)")
    p.add_argument("--price-out", type=float, help="dollars per million completion tokens")
    p.add_argument("--no-dedup", action="store_true", help="keep repeated rationales of a question")
    p.add_argument("--store", help="call store (default <out stem>.calls.sqlite)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--save-logits", type=int, metavar="K",
                   help="hf: teachers: also store the teacher's top-K log-probs beside --out (offline white-box KD)")
    p.set_defaults(func=cmd_teach)

    p = sub.add_parser("filter", help="filter a rationale file by teacher correctness, dedup")
    p.add_argument("--data", required=True, help="rationale file (any loadable format)")
    p.add_argument("--out", required=True)
    p.add_argument("--keep", default="correct", choices=["correct", "all"])
    p.add_argument("--format", default=None)
    p.add_argument("--no-dedup", action="store_true")
    p.set_defaults(func=cmd_filter)
