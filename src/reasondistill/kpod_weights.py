"""``reasondistill inspect-weights RUN_DIR``: see which rationale tokens KPOD's mask made keypoints.

KPOD's own command, kept out of methods/ so the CLI can register it without importing torch (and
named so it does not shadow the standard library's ``inspect``).

KPOD saves the per-token weights of its training rationales in ``kpod_weights.jsonl``; this prints a
few of them as text with the keypoints, the tokens the mask keeps, marked ``[like this]``, then the
heaviest tokens with their weights. ``--full`` prints every token as ``token[weight]`` instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .errors import UserError
from .io import read_jsonl
from .runfolder import WEIGHTS_FILE  # written by methods/kpod.py


def load_weights(run_dir: str | Path, n: int) -> list[dict]:
    """The first ``n`` records of a KPOD run's token weights, checked."""
    path = Path(run_dir) / WEIGHTS_FILE
    if not Path(run_dir).is_dir():
        raise UserError("run folder not found", path=str(run_dir))
    if not path.exists():
        raise UserError(f"no {WEIGHTS_FILE}: token weights exist only for runs trained with --method kpod",
                        path=str(run_dir))
    rows = []
    for line, row in read_jsonl(path):
        lengths = {len(row.get(key) or []) for key in ("tokens", "weights", "keep_probs")}
        if len(lengths) != 1:
            raise UserError("'tokens', 'weights' and 'keep_probs' differ in length", path=str(path), line=line)
        rows.append(row)
        if len(rows) >= n:
            break
    return rows


def render(row: dict, full: bool = False, n_list: int = 8) -> str:
    """One rationale as readable text with its keypoints marked (or every token's weight)."""
    tokens, weights = row["tokens"], row["weights"]
    head = f"{row.get('id', '?')}  answer: {row.get('answer', '?')}"
    if "kept_fraction" in row:
        head += f"  (mask kept {row['kept_fraction']:.0%} of tokens)"
    lines = [head, f"  Q: {row.get('question', '').strip()}"]
    if full:
        lines.append("  R: " + "".join(_mark(t, f"{w:.2f}") for t, w in zip(tokens, weights)))
        return "\n".join(lines)
    if not tokens:
        return "\n".join(lines + ["  R: (empty)"])
    # A keypoint is a token the mask keeps: keep probability over one half.
    lines.append("  R: " + "".join(_mark(t) if p > 0.5 and t.strip() else t
                                   for t, p in zip(tokens, row["keep_probs"])).strip())
    heaviest = sorted((i for i in range(len(tokens)) if tokens[i].strip()), key=lambda i: -weights[i])[:n_list]
    lines.append("  heaviest: " + ", ".join(f"{tokens[i].strip()!r} {weights[i]:.2f}" for i in heaviest))
    return "\n".join(lines)


def _mark(token: str, weight: str = "") -> str:
    """``[token]`` (or ``token[w]``) with the token's leading space kept outside the brackets."""
    body = token.lstrip()
    space = token[:len(token) - len(body)]
    return f"{space}{body}[{weight}]" if weight else f"{space}[{body}]"


def cmd_inspect_weights(args: argparse.Namespace) -> None:
    if args.n < 1:
        raise UserError("--n must be at least 1")
    rows = load_weights(args.run_dir, args.n)
    print("\n\n".join(render(r, args.full) for r in rows))


def register(sub) -> None:
    p = sub.add_parser("inspect-weights", help="show the token weights KPOD learnt for training rationales")
    p.add_argument("run_dir", help="run folder of a kpod training run")
    p.add_argument("--n", type=int, default=5, help="how many rationales (default 5)")
    p.add_argument("--full", action="store_true", help="print every token with its weight, token[weight]")
    p.set_defaults(func=cmd_inspect_weights)
