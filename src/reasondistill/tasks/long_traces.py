"""Reasoning-model style traces for the synthetic tasks: the scripted teacher's ``long`` style.

A reasoning model does not write five tidy sentences: it restates the problem, works through it,
checks intermediate results, takes "wait, let me re-check" detours, sometimes backtracks from a
slip it made, tries a second route, and only then writes its final line. Students distilled from
such teachers write thousands of thinking tokens before an answer, which is where answering first
pays most. This module writes such traces from a synthetic problem, to a target length (the
``tokens`` knob, counted by :func:`trace_tokens`), deterministically from the rng it is given.

Every statement of a clean trace is true except the slips it corrects on the spot, and its final
line (in words ``rationale_answer`` reads: the short style's, or for tracking the colour form of its
earlier wordings) concludes the gold answer. A hallucinated trace is one of two kinds:
- ``wrong_step``: a detour that is *not* corrected. The trace "re-reads" the question, misreads
  one step, and every later block (checks, second routes, the final line) follows the misreading;
- ``wrong_conclusion``: the whole trace is right and the final line argues for another answer.
"""

from __future__ import annotations

import copy
import random
import re
from typing import Any

from .phrasing import MINUS, PLUS

DEFAULT_TOKENS = 500
MIN_TOKENS, MAX_TOKENS = 50, 8000
_TOKEN = re.compile(r"\w+|[^\w\s]")
ORDINALS = ["first", "second", "third", "fourth"]


def trace_tokens(text: str) -> int:
    """Length of a trace in word and punctuation tokens: close to what an LLM's tokenizer counts
    on this plain English, and independent of any student's tokenizer."""
    return len(_TOKEN.findall(text))


# ----- per-task worlds: the facts a trace states, for a problem as (mis)read -----------------------
# Each ``_X_world`` returns a dict of callables over one reading of the problem. A misreading is a
# copy of the problem with one step changed (``_X_misread``), so all later blocks follow it.

def _coin_world(p: dict) -> dict:
    names, flips = p["names"], p["flips"]

    def side(h: bool) -> str:
        return "heads" if h else "tails"

    states = [True]
    for f in flips:
        states.append(states[-1] ^ f)

    def step(k: int) -> str:
        if flips[k]:
            return f"{names[k]} flips the coin, so it goes from {side(states[k])} to {side(states[k + 1])} up."
        return f"{names[k]} does not flip the coin, so it stays {side(states[k])} up."

    def slip(k: int, rng: random.Random) -> str:
        wrong = "does not flip" if flips[k] else "flips"
        return (f"{names[k]} {wrong} the coin... wait, no. Let me re-read that. The question says "
                f"{names[k]} {'flips' if flips[k] else 'does not flip'} the coin. So after {names[k]} "
                f"the coin is {side(states[k + 1])} up, not {side(not states[k + 1])}.")

    def route() -> str:
        n = sum(flips)
        parity = "even" if n % 2 == 0 else "odd"
        return (f"Another way to see it: the coin turns over once per flip. There {'is' if n == 1 else 'are'} "
                f"{n} flip{'' if n == 1 else 's'} in all, which is {parity}. An even number of flips leaves it "
                f"as it started and an odd number turns it over, so it is {side(states[-1])} up.")

    return {"n": len(flips), "step": step, "slip": slip, "route": route, "final": states[-1],
            "start": "The coin starts heads up.",
            "restate": f"So {len(names)} people, {', '.join(names[:-1])} and {names[-1]}, each flip the coin or not, "
                       "and I need to know if it is still heads up at the end.",
            "check": lambda k: f"Let me check the {ORDINALS[k]} person again. {step(k)} Yes, that matches.",
            "conclude": lambda heads: f"So the coin ends {side(heads)} up.",
            "other": lambda heads, rng: not heads}


def _coin_misread(p: dict, rng: random.Random) -> tuple[dict, str]:
    q = copy.deepcopy(p)
    k = rng.randrange(len(q["flips"]))
    q["flips"][k] = not q["flips"][k]
    what = "flips the coin" if q["flips"][k] else "does not flip the coin"
    return q, (f"Wait, let me re-read what {q['names'][k]} does. I think I misread it before: "
               f"{q['names'][k]} {what}. Let me redo it with that.")


def _letters_world(p: dict) -> dict:
    words = p["words"]
    letters = p.get("letters") or [w[-1].lower() for w in words]

    def step(k: int) -> str:
        return f'The word "{words[k]}" ends with "{letters[k]}".'

    def slip(k: int, rng: random.Random) -> str:
        others = [c for c in words[k].lower()[:-1] if c != letters[k]] or ["a"]
        wrong = rng.choice(others)
        return (f'The last letter of "{words[k]}" is "{wrong}"... wait, no. Let me spell it: '
                f'{", ".join(words[k].lower())}. The last one is "{letters[k]}", not "{wrong}".')

    def route() -> str:
        spelt = " then ".join(f'"{c}"' for c in letters)
        return f'Let me build it letter by letter: {spelt}, which gives "{"".join(letters)}".'

    def other(result: str, rng: random.Random) -> str:
        if len(set(result)) > 1:
            while True:
                i, j = rng.sample(range(len(result)), 2)
                if result[i] != result[j]:
                    swapped = list(result)
                    swapped[i], swapped[j] = swapped[j], swapped[i]
                    return "".join(swapped)
        return result[1:]

    return {"n": len(words), "step": step, "slip": slip, "route": route, "final": "".join(letters),
            "start": f"There are {len(words)} words: " + ", ".join(f'"{w}"' for w in words) + ".",
            "restate": "I need the last letter of each word, in order, joined together.",
            "check": lambda k: f'Let me check "{words[k]}" again: it ends with "{letters[k]}". Yes.',
            "conclude": lambda r: f'Together they make "{r}".', "other": other}


def _letters_misread(p: dict, rng: random.Random) -> tuple[dict, str]:
    q = copy.deepcopy(p)
    letters = [w[-1].lower() for w in q["words"]]
    k = rng.randrange(len(letters))
    others = [c for c in q["words"][k].lower() if c != letters[k]] or [c for c in "aeiou" if c != letters[k]]
    letters[k] = rng.choice(others)
    q["letters"] = letters
    return q, (f'Wait, let me look at "{q["words"][k]}" again. I think its last letter is actually '
               f'"{letters[k]}". Let me redo it with that.')


def _arith_world(p: dict) -> dict:
    name, item, they = p["name"], p["item"], p["pronoun"]
    totals = [p["start"]]
    for op, n, _ in p["steps"]:
        totals.append(totals[-1] + n if op == "+" else totals[-1] - n)

    def phrase(k: int) -> str:
        op, n, v = p["steps"][k]
        return (PLUS if op == "+" else MINUS)[v].format(n=n)

    def step(k: int) -> str:
        op, n, _ = p["steps"][k]
        return f"Then {they} {phrase(k)}: {totals[k]} {op} {n} = {totals[k + 1]}."

    def slip(k: int, rng: random.Random) -> str:
        op, n, _ = p["steps"][k]
        wrong = totals[k + 1] + rng.choice([-1, 1])
        return (f"{totals[k]} {op} {n} is {wrong}... wait, let me recount that. {totals[k]} {op} {n} = "
                f"{totals[k + 1]}, not {wrong}. So {they} has {totals[k + 1]}.")

    def route() -> str:
        change = totals[-1] - totals[0]
        parts = " ".join(f"{op} {n}" for op, n, _ in p["steps"])
        return (f"Let me check it another way: the changes are {parts}, which is {'+' if change >= 0 else '-'} "
                f"{abs(change)} in all, and {totals[0]} {'+' if change >= 0 else '-'} {abs(change)} = {totals[-1]}.")

    return {"n": len(p["steps"]), "step": step, "slip": slip, "route": route, "final": totals[-1],
            "start": f"{name} starts with {totals[0]} {item}.",
            "restate": f"I need to follow how many {item} {name} has after each change.",
            "check": lambda k: f"Let me check step {k + 1}: {step(k)[5:]} Yes, that is right.",
            "conclude": lambda t: f"So {name} has {t} {item} now.",
            "other": lambda t, rng: t + rng.choice([-1, 1, 2]) if t > 0 else t + rng.choice([1, 2])}


def _arith_misread(p: dict, rng: random.Random) -> tuple[dict, str]:
    q = copy.deepcopy(p)
    k = rng.randrange(len(q["steps"]))
    op, n, v = q["steps"][k]
    new = n + 1 if n == 1 else n + rng.choice([-1, 1])  # totals stay >= 0: see synthetic._make_arith
    q["steps"][k] = [op, new, v]
    said = (PLUS if op == "+" else MINUS)[v].format(n=new)
    return q, (f"Wait, let me re-read step {k + 1}. I think it says {q['pronoun']} {said}, not {n}. "
               "Let me redo it with that.")


def _track_world(p: dict) -> dict:
    names, balls, swaps, target = p["names"], p["balls"], p["swaps"], p["target"]
    holds = [list(range(3))]
    for a, b in swaps:
        h = list(holds[-1])
        h[a], h[b] = h[b], h[a]
        holds.append(h)

    def has(k: int, person: int) -> str:
        return f"{names[person]} has the {balls[holds[k][person]]} ball"

    def step(k: int) -> str:
        a, b = swaps[k]
        return f"Swap {k + 1}: {names[a]} and {names[b]} swap, so now {has(k + 1, a)} and {has(k + 1, b)}."

    def slip(k: int, rng: random.Random) -> str:
        a, b = swaps[k]
        return (f"After swap {k + 1}, {names[a]} still has the {balls[holds[k][a]]} ball... no, wait. They "
                f"swapped, so {names[a]} gets what {names[b]} had: {has(k + 1, a)}.")

    def route() -> str:
        ball = holds[-1][target]
        path = [names[holds[k].index(ball)] for k in range(len(holds))]
        moves = " then ".join(dict.fromkeys(path))
        return (f"Let me follow the {balls[ball]} ball instead: it goes {moves}, so it ends with "
                f"{names[target]}.")

    return {"n": len(swaps), "step": step, "slip": slip, "route": route, "final": holds[-1][target],
            "start": "At the start " + ", ".join(has(0, i) for i in range(3)) + ".",
            "restate": f"I need to track the swaps and see which ball {names[target]} has at the end.",
            "check": lambda k: f"Let me check swap {k + 1} again. {step(k)[len(f'Swap {k + 1}: '):]} Yes.",
            "conclude": lambda b: f"So {names[target]} ends with the {balls[b]} ball.",
            "other": lambda b, rng: rng.choice([x for x in range(3) if x != b])}


def _track_misread(p: dict, rng: random.Random) -> tuple[dict, str] | None:
    final = _track_world(p)["final"]
    options = [(k, pair) for k in range(len(p["swaps"])) for pair in ([0, 1], [0, 2], [1, 2])
               if sorted(p["swaps"][k]) != pair]
    rng.shuffle(options)
    for k, pair in options:
        q = copy.deepcopy(p)
        q["swaps"][k] = pair
        if _track_world(q)["final"] != final:
            a, b = pair
            return q, (f"Wait, let me re-read swap {k + 1}. I think it is {p['names'][a]} and {p['names'][b]} "
                       "who swap there. Let me redo it with that.")
    return None  # no single misread swap changes the target's ball: argue for another ball instead


WORLDS: dict[str, tuple[Any, Any]] = {
    "coin_flip": (_coin_world, _coin_misread), "last_letters": (_letters_world, _letters_misread),
    "arithmetic": (_arith_world, _arith_misread), "tracking": (_track_world, _track_misread),
}
OPENINGS = ["Okay, let me think about this.", "Let me work through this carefully.",
            "Alright, let me figure this out step by step."]


def _walk(w: dict) -> list[str]:
    return [w["start"]] + [w["step"](k) for k in range(w["n"])]


def first_pass(task: str, problem: dict) -> str:
    """The clean first walk through ``problem``: a clean trace's second line, the one a student's
    own first pass is checked against (bench/trace_audit.py)."""
    return " ".join(_walk(WORLDS[task][0](problem)))


def _block(w: dict, rng: random.Random) -> str:
    """One more paragraph of thinking about the world ``w``: a check, a corrected slip, a second
    route or a second full pass."""
    kind = rng.choice(["check", "slip", "route", "again"])
    k = rng.randrange(w["n"])
    if kind == "check":
        return w["check"](k)
    if kind == "slip":
        return "Hmm, let me re-check this part. " + w["slip"](k, rng)
    if kind == "route":
        return w["route"]()
    return "Let me go through it once more from the start. " + " ".join(_walk(w))


def long_trace(task: str, problem: dict, rng: random.Random, hallucinate: bool,
               tokens: int = DEFAULT_TOKENS) -> tuple[str, str | None]:
    """A reasoning-model style trace of about ``tokens`` tokens (at least the first pass and the
    final line) and the hallucination mode (None when clean). Lines are paragraphs; the last line
    states the conclusion."""
    make_world, misread = WORLDS[task]
    world = make_world(problem)
    mode = rng.choice(["wrong_step", "wrong_conclusion"]) if hallucinate else None
    paragraphs = [rng.choice(OPENINGS) + " " + world["restate"], " ".join(_walk(world))]
    detour_at = None
    if mode == "wrong_step":
        wrong = misread(problem, rng)
        if wrong is None:
            mode = "wrong_conclusion"
        else:
            detour_at = 2 + rng.randrange(2)  # after the first pass, sometimes after one more block
    final_world = world
    used = sum(map(trace_tokens, paragraphs)) + 12  # the final line's share, roughly
    while used < tokens or (detour_at is not None and len(paragraphs) <= detour_at):
        if detour_at is not None and len(paragraphs) == detour_at:
            wrong_problem, note = wrong
            final_world = make_world(wrong_problem)
            paragraphs.append(note + " " + " ".join(_walk(final_world)))
        else:
            paragraphs.append(_block(final_world, rng))
        used += trace_tokens(paragraphs[-1])
    answer = final_world["final"]
    if mode == "wrong_conclusion":
        answer = world["other"](answer, rng)
    paragraphs.append(final_world["conclude"](answer))
    return "\n".join(paragraphs), mode
