"""``reasondistill teach`` and ``reasondistill filter``: their options and thin wrappers over :mod:`.run`.

``TeachOptions`` is teach's one option definition (see options.py): its fields are the flags, the
``--config`` YAML keys and the keywords of ``reasondistill.teach``; add an option as one field here
and pass it on in :func:`teach`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, ClassVar, Literal

from pydantic import field_validator

from ..errors import UserError
from ..options import REQUIRED, Options, add_flags, build, call_values, opt, parse_command, takes


class TeachOptions(Options):
    """``reasondistill teach`` / ``reasondistill.teach``."""

    command: ClassVar[str] = "teach"

    data: str = opt(REQUIRED, "built-in task (synthetic/coin_flip), hf:NAME or a JSON/JSONL path")
    teacher: str = opt(REQUIRED, "openai:MODEL | hf:ID_OR_PATH | scripted")
    style: Literal["short", "long"] | None = opt(None, "synthetic tasks: short (default) or long: reasoning-model "
                                                 "traces with checks, detours and backtracking (same as --data "
                                                 "synthetic/NAME:long)")
    trace_tokens: int | None = opt(None, "--style long: trace length in tokens (default 500; 200-2000 is a "
                                   "reasoning model's range)", ge=1)
    out: str = opt(REQUIRED, "rationale file to write (JSONL, usable as train --data)")
    split: str | None = opt(None, "default: all of a file, train of a synthetic or hub task")
    n: int | None = opt(None, "use the first N examples", ge=1)
    seed: int = opt(0, "seed of a file's split or a synthetic task")
    hallucination: float = opt(0.0, "synthetic tasks: fraction of corrupted rationales", ge=0, le=1)
    format: str | None = opt(None, "gsm8k, teacher, jsonl, semcot, logic (default: detected)")
    base_url: str | None = opt(None, "OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (key: OPENAI_API_KEY)")
    api: Literal["chat", "completions"] | None = opt(None, "chat (default for openai:) or completions")
    samples: int = opt(1, "rationales per question", ge=1)
    temperature: float | None = opt(None, "default 0, or 0.7 with --samples > 1", ge=0)
    top_p: float = opt(1.0, "nucleus sampling mass", gt=0, le=1)
    max_tokens: int = opt(256, "rationale length limit in tokens", ge=1)
    concurrency: int = opt(8, "requests in flight (openai) or batch size (hf)", ge=1)
    timeout: float = opt(60.0, "seconds per request", gt=0)
    max_retries: int = opt(6, "retries on 429, 5xx and timeouts", ge=0)
    backoff: float = opt(1.0, "first retry pause in seconds, doubled each time", ge=0)
    extra_body: dict[str, Any] | None = opt(None, "JSON object merged into every request (server-specific fields)")
    few_shot: str | None = opt(None, "file of worked examples (with rationales) to prompt with")
    shots: int | None = opt(None, "use the first K worked examples (default all)", ge=1)
    keep: Literal["correct", "all"] = opt("correct", "correct: only finished rationales whose answer matches gold; "
                                          "all (truncated ones too, marked)")
    reasoning: Literal["auto", "off"] = opt("auto", "auto: a reasoning teacher's trace (reasoning_content, reasoning, "
                                            "<think>) is the rationale, one call per sample; off: read every "
                                            "response as a plain model's")
    select: Literal["all-correct", "shortest-correct", "first-correct"] = opt(
        "all-correct", "with --samples: keep all correct rationales, or one per question")
    max_rationale_tokens: int | None = opt(None, "drop rationales longer than T teacher tokens", ge=1, metavar="T")
    batch_api: bool = opt(False, "openai: teachers: submit through /v1/files + /v1/batches (cheaper, slower; "
                          "resumable)")
    batch_poll: float = opt(30.0, "seconds between batch status checks", gt=0)
    price_in: float | None = opt(None, "dollars per million prompt tokens (adds cost to the summary)", ge=0)
    price_out: float | None = opt(None, "dollars per million completion tokens", ge=0)
    dedup: bool = opt(True, "drop repeated rationales of a question (--no-dedup keeps them)")
    store: str | None = opt(None, "call store (default <out stem>.calls.sqlite)")
    save_logits: int | None = opt(None, "hf: teachers: also store the teacher's top-K log-probs beside --out "
                                  "(offline white-box KD)", ge=1, metavar="K")
    overwrite: bool = opt(False, "replace an existing --out file (the call store still makes the rerun cheap)")
    progress: bool = opt(True, "progress bar (--quiet: none)", flags=["--quiet"], action="store_false")

    @field_validator("extra_body", mode="before")
    @classmethod
    def _json_object(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as e:
                raise ValueError(f"not valid JSON ({e.msg})") from None
            if not isinstance(value, dict):
                raise ValueError("must be a JSON object")
        return value


TEACH_ARGS = ("data", "teacher", "out")


@takes(TeachOptions, positional=TEACH_ARGS)
def teach(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Collect rationales from a teacher and write them to ``out`` (see ``teachers.run.teach``);
    with ``save_logits=K`` also the teacher's top-K log-probabilities. Returns the summary."""
    return run_teach(build(TeachOptions, [("keyword:teach", call_values("teach", TEACH_ARGS, args, kwargs))]))


def run_teach(o: TeachOptions) -> dict[str, Any]:
    """teach from checked options: the output path is checked before any call is made."""
    from ..runfolder import check_output_file
    from .run import teach as collect
    if o.save_logits and not str(o.teacher).startswith("hf:"):
        raise UserError("--save-logits needs an open teacher (hf:ID_OR_PATH): an API gives no logits")
    check_output_file(o.out, overwrite=o.overwrite)
    from ..tasks import with_style
    values = o.as_dict()
    for key in ("save_logits", "overwrite", "style", "trace_tokens"):
        values.pop(key)
    values["data"] = with_style(str(o.data), o.style, o.trace_tokens)  # synthetic/NAME:long=TOKENS
    summary = collect(**values)
    if o.save_logits and summary["stats"]["total"]["kept"]:
        from ..kd import logits_path
        from ..training.teacher_logits import save_teacher_logits
        summary["logits"] = save_teacher_logits(o.teacher.removeprefix("hf:"), summary["out"],
                                                logits_path(summary["out"]), k=int(o.save_logits),
                                                progress=o.progress)
    return summary


def cmd_teach(args: argparse.Namespace) -> None:
    from ..rationales import format_selection, format_stats
    o = parse_command(TeachOptions, args)
    summary = run_teach(o)
    calls = summary["calls"]
    print(format_stats(summary["stats"], o.price_in, o.price_out))
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
              f"(at ${o.price_in or 0}/M in, ${o.price_out or 0}/M out)")
    if not summary["stats"]["total"]["kept"]:
        print(f"reasondistill: warning: no rationale kept (--keep {o.keep}); see the statistics above",
              file=sys.stderr)
    elif "logits" in summary:
        saved = summary["logits"]
        print(f"wrote top-{saved['k']} teacher log-probabilities for {saved['tokens']} tokens to {saved['path']} "
              f"({saved['bytes_per_token']:.0f} bytes per token)")


def cmd_filter(args: argparse.Namespace) -> None:
    from ..rationales import format_stats
    from .run import filter_file
    summary = filter_file(args.data, args.out, keep=args.keep, dedup=not args.no_dedup, format=args.format)
    print(format_stats(summary["stats"]))
    print(f"wrote {summary['stats']['total']['kept']} rationales to {summary['out']}")


def register(sub) -> None:
    p = sub.add_parser("teach", help="collect rationales from a teacher LLM (resumable)")
    add_flags(p, TeachOptions)
    p.set_defaults(func=cmd_teach)

    p = sub.add_parser("filter", help="filter a rationale file by teacher correctness, dedup")
    p.add_argument("--data", required=True, help="rationale file (any loadable format)")
    p.add_argument("--out", required=True)
    p.add_argument("--keep", default="correct", choices=["correct", "all"])
    p.add_argument("--format", default=None)
    p.add_argument("--no-dedup", action="store_true")
    p.set_defaults(func=cmd_filter)
