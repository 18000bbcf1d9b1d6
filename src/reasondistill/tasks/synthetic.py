"""Built-in synthetic tasks with a scripted teacher: offline, seeded, any size.

Each task makes a structured problem (kept in ``meta["problem"]``), a question, the gold answer and
a step-by-step rationale in plain English, one short sentence per step. The ``hallucination`` knob
corrupts an exact share of the rationales (a wrong intermediate step that later steps follow, or a
conclusion that argues for another answer) while the gold answer and the teacher's stated answer
stay right: the noise a correctness filter cannot catch, which is what PST's robustness claim is
about. Rationales never state "the answer is"; methods add the answer themselves.

Vocabulary is small on purpose (16 names, 20 words, 8 items, 8 colours, numbers below 20): tiny
students train on CPU with a tokenizer fitted to this text.
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import UserError
from .answers import extract_answer
from .example import Example
from .phrasing import MINUS, PLUS

NAMES: list[tuple[str, str]] = [
    ("Tom", "he"), ("Sam", "he"), ("Ben", "he"), ("Max", "he"), ("Leo", "he"), ("Jack", "he"),
    ("Dan", "he"), ("Paul", "he"), ("Anna", "she"), ("Mia", "she"), ("Lucy", "she"), ("Emma", "she"),
    ("Kate", "she"), ("Sara", "she"), ("Lily", "she"), ("Nina", "she"),
]
WORDS = ["apple", "river", "cloud", "green", "light", "music", "glass", "money", "lamp", "book",
         "fish", "snow", "box", "bell", "jam", "sofa", "hero", "quiz", "gift", "wolf"]
ITEMS = ["apples", "pens", "cards", "books", "coins", "shells", "stickers", "marbles"]
COLORS = ["red", "blue", "green", "yellow", "white", "black", "pink", "purple"]
MAX_VALUE = 19

# A problem maker returns (question, answer, problem, choices); a rationale writer returns
# (rationale, hallucination mode or None).
Maker = Callable[[random.Random], tuple[str, str, dict[str, Any], dict[str, str] | None]]
Writer = Callable[[dict[str, Any], random.Random, bool], tuple[str, str | None]]


@dataclass(frozen=True)
class SyntheticTask:
    name: str
    answer_type: str
    description: str
    make: Maker
    write: Writer


# ----- coin flip ------------------------------------------------------------------------------------

def _make_coin(rng: random.Random):
    names = [n for n, _ in rng.sample(NAMES, rng.randint(2, 4))]
    flips = [rng.random() < 0.5 for _ in names]
    steps = " ".join(f"{n} flips the coin." if f else f"{n} does not flip the coin." for n, f in zip(names, flips))
    question = f"A coin is heads up. {steps} Is the coin still heads up?"
    answer = "yes" if sum(flips) % 2 == 0 else "no"
    return question, answer, {"names": names, "flips": flips}, None


def _write_coin(p: dict, rng: random.Random, hallucinate: bool):
    flips = list(p["flips"])
    mode = rng.choice(["wrong_step", "wrong_conclusion"]) if hallucinate else None
    if mode == "wrong_step":  # one flip told as no flip (or the reverse); later steps follow it
        i = rng.randrange(len(flips))
        flips[i] = not flips[i]
    heads, sents = True, []
    for name, flip in zip(p["names"], flips):
        heads ^= flip
        side = "heads" if heads else "tails"
        sents.append(f"{name} flips the coin, so it is {side} up." if flip
                     else f"{name} does not flip the coin, so it stays {side} up.")
    if mode == "wrong_conclusion":
        heads = not heads
    sents.append(f"So the coin ends {'heads' if heads else 'tails'} up.")
    return " ".join(sents), mode


# ----- last letters ---------------------------------------------------------------------------------

def _make_letters(rng: random.Random):
    pool = [n for n, _ in NAMES] + WORDS
    words = rng.sample(pool, 2 if rng.random() < 0.25 else 3)
    question = f'Take the last letters of the words in "{" ".join(words)}" and concatenate them.'
    return question, "".join(w[-1] for w in words).lower(), {"words": words}, None


def _write_letters(p: dict, rng: random.Random, hallucinate: bool):
    words = p["words"]
    letters = [w[-1].lower() for w in words]
    mode = rng.choice(["wrong_step", "wrong_conclusion"]) if hallucinate else None
    if mode == "wrong_step":  # one wrong letter (a neighbour in the word), used in the result
        i = rng.randrange(len(words))
        others = [c for c in words[i].lower() if c != letters[i]] or [c for c in "aeiou" if c != letters[i]]
        letters[i] = rng.choice(others)
    sents = [f'The last letter of "{w}" is "{c}".' for w, c in zip(words, letters)]
    result = "".join(letters)
    if mode == "wrong_conclusion":  # right letters, wrongly joined (swapped or one dropped)
        if len(set(letters)) > 1:
            i, j = rng.sample(range(len(letters)), 2)
            while letters[i] == letters[j]:
                i, j = rng.sample(range(len(letters)), 2)
            swapped = list(letters)
            swapped[i], swapped[j] = swapped[j], swapped[i]
            result = "".join(swapped)
        else:
            result = "".join(letters[1:])
    sents.append(f'Together they make "{result}".')
    return " ".join(sents), mode


# ----- arithmetic -----------------------------------------------------------------------------------

def _make_arith(rng: random.Random):
    name, pronoun = rng.choice(NAMES)
    item = rng.choice(ITEMS)
    total = start = rng.randint(2, 12)
    steps = []
    for _ in range(rng.randint(2, 3)):
        can_add, can_sub = total < MAX_VALUE, total > 1
        if can_add and (not can_sub or rng.random() < 0.5):
            n = rng.randint(1, min(9, MAX_VALUE - total))
            steps.append(["+", n, rng.randrange(len(PLUS))])
            total += n
        else:
            n = rng.randint(1, min(9, total - 1))
            steps.append(["-", n, rng.randrange(len(MINUS))])
            total -= n
    phrases = [(PLUS if op == "+" else MINUS)[v].format(n=n) for op, n, v in steps]
    actions = ", ".join(phrases[:-1]) + f" and then {phrases[-1]}"
    they = pronoun.capitalize()
    does = "does he" if pronoun == "he" else "does she"
    question = f"{name} has {start} {item}. {they} {actions}. How many {item} {does} have now?"
    problem = {"name": name, "pronoun": pronoun, "item": item, "start": start, "steps": steps}
    return question, str(total), problem, None


def _write_arith(p: dict, rng: random.Random, hallucinate: bool):
    mode = rng.choice(["wrong_step", "wrong_conclusion"]) if hallucinate else None
    bad_step = rng.randrange(len(p["steps"])) if mode == "wrong_step" else -1
    they = p["pronoun"].capitalize()
    total = p["start"]
    sents = [f"{p['name']} starts with {total} {p['item']}."]
    for i, (op, n, v) in enumerate(p["steps"]):
        new = total + n if op == "+" else total - n
        if i == bad_step:  # a slip in one sum; later steps carry it along
            new += rng.choice([-1, 1, 2])  # true values are >= 1, so every later value stays >= 0
        phrase = (PLUS if op == "+" else MINUS)[v].format(n=n)
        sents.append(f"{they} {phrase}, so {p['pronoun']} has {total} {op} {n} = {new}.")
        total = new
    if mode == "wrong_conclusion":
        total += rng.choice([-1, 1, 2])
    sents.append(f"So {p['name']} has {total} {p['item']} now.")
    return " ".join(sents), mode


# ----- object tracking ------------------------------------------------------------------------------

def _make_tracking(rng: random.Random):
    names = [n for n, _ in rng.sample(NAMES, 3)]
    balls = rng.sample(COLORS, 3)
    swaps = [rng.sample(range(3), 2) for _ in range(rng.randint(2, 3))]
    target = rng.randrange(3)
    holding = list(range(3))  # holding[person] = index of the ball they hold
    for a, b in swaps:
        holding[a], holding[b] = holding[b], holding[a]
    start = f"{names[0]} has a {balls[0]} ball, {names[1]} has a {balls[1]} ball and {names[2]} has a {balls[2]} ball."
    moves = " ".join(f"{'First' if k == 0 else 'Then'} {names[a]} and {names[b]} swap balls."
                     for k, (a, b) in enumerate(swaps))
    question = f"{start} {moves} Which ball does {names[target]} have at the end?"
    choices = {letter: f"{color} ball" for letter, color in zip("ABC", balls)}
    problem = {"names": names, "balls": balls, "swaps": swaps, "target": target}
    return question, "ABC"[holding[target]], problem, choices


ASKER = "Asker"  # the one who asks the question, a pseudo-person in the tracking rationale


def _holder_after(a: int, b: int, who: int) -> int:
    """Who holds, after ``a`` and ``b`` swap, the ball that ``who`` held before."""
    return b if who == a else a if who == b else who


def _follow_balls(p: dict, skip: int, first: Callable[[str, int], str],
                  last: Callable[[str, int], str]) -> tuple[list[str], int]:
    """Each ball followed forward, its holder named after every swap ("Ann and Bo swap: Bo has
    it."); ``first(holder, ball)`` and ``last(holder, ball)`` word each ball's opening and closing
    line (the bench's other wordings reuse this with their own). ``skip`` is the swap a
    hallucinated trace leaves out. Returns the sentences and the ball the asked person ends with."""
    names, sents, final = p["names"], [], -1
    for ball in range(3):
        who = ball  # person i starts with ball i
        sents.append(first(names[who], ball))
        for k, (a, b) in enumerate(p["swaps"]):
            if k != skip:  # a skipped swap is the hallucinated step: told as if nothing changed
                who = _holder_after(a, b, who)
            sents.append(f"{names[a]} and {names[b]} swap: {names[who]} has it.")
        sents.append(last(names[who], ball))
        if who == p["target"]:
            final = ball
    return sents, final


def ball_by_letter(holder: str, ball: int) -> str:
    """A ball's opening line, the ball named by its answer letter ("Ball A: Ann has it.")."""
    return f"Ball {'ABC'[ball]}: {holder} has it."


def _track(p: dict, skip: int = -1) -> tuple[list[str], int]:
    """Follow each ball forward, one holder per swap, then let the asker swap with the person asked
    about (here Bo): "Ball A: Ann has it. Ann and Bo swap: Bo has it. Bo and Asker swap: Asker has
    it. So Asker gets A." The asker ends up holding exactly the asked person's ball, so the test "is
    this ball the asked person's?" is told as one more swap, the step small students learn in every
    seed, instead of a yes/no they learn in some seeds only (bench/README.md, settings search); the
    conclusion copies the letter after "Asker gets". Returns the sentences and the index of the
    ball the asked person ends with."""
    target = p["names"][p["target"]]

    def last(holder: str, ball: int) -> str:
        who = ASKER if holder == target else holder
        return f"{target} and {ASKER} swap: {who} has it. So {who} gets {'ABC'[ball]}."
    return _follow_balls(p, skip, ball_by_letter, last)


def _write_tracking(p: dict, rng: random.Random, hallucinate: bool):
    sents, final = _track(p)
    mode = rng.choice(["wrong_step", "wrong_conclusion"]) if hallucinate else None
    if mode == "wrong_step":
        for k in rng.sample(range(len(p["swaps"])), len(p["swaps"])):
            wrong_sents, wrong_final = _track(p, skip=k)
            if wrong_final != final:
                sents, final = wrong_sents, wrong_final
                break
        else:  # no single skipped swap changes this person's ball: argue for another ball instead
            mode = "wrong_conclusion"
    if mode == "wrong_conclusion":
        final = rng.choice([b for b in range(3) if b != final])
    sents.append(_conclude(p, final))
    return " ".join(sents), mode


def _conclude(p: dict, final: int) -> str:
    """The last sentence: the asked person's ball by its answer letter (the one the asker gets)."""
    return f"So {p['names'][p['target']]} ends with ball {'ABC'[final]}."


SYNTHETIC_TASKS: dict[str, SyntheticTask] = {t.name: t for t in [
    SyntheticTask("coin_flip", "yesno", "coin flips by 2-4 people; is the coin still heads up?",
                  _make_coin, _write_coin),
    SyntheticTask("last_letters", "text", "concatenate the last letters of 2-3 words",
                  _make_letters, _write_letters),
    SyntheticTask("arithmetic", "number", "2-3 step word problems with numbers below 20",
                  _make_arith, _write_arith),
    SyntheticTask("tracking", "choice", "three people swap balls 2-3 times; who holds which ball",
                  _make_tracking, _write_tracking),
]}


def _task_of(name: str) -> SyntheticTask:
    key = name.removeprefix("synthetic/").partition(":")[0]
    if key not in SYNTHETIC_TASKS:
        raise UserError(f"unknown synthetic task '{name}'; valid: {', '.join(SYNTHETIC_TASKS)}")
    return SYNTHETIC_TASKS[key]


def is_test_question(question: str) -> bool:
    """A fixed fifth of all possible questions is reserved for test sets, so a generated train set
    and test set never share a question, whatever their seeds."""
    return zlib.crc32(question.encode("utf-8")) % 5 == 0


def _write(example: Example, rng: random.Random, hallucinate: bool) -> tuple[str, str | None]:
    problem = example.meta.get("problem")
    if not isinstance(problem, dict):
        raise UserError(f"example '{example.id}' has no meta['problem']; it was not made by the "
                        "synthetic generator, so the scripted teacher cannot explain it")
    return _task_of(example.task).write(problem, rng, hallucinate)


_CONCLUSIONS = {  # the last sentence each scripted rationale ends with, and how it maps to an answer
    "coin_flip": (r"ends (heads|tails) up", lambda m, ex: "yes" if m.group(1) == "heads" else "no"),
    "last_letters": (r'Together they make "([^"]*)"', lambda m, ex: m.group(1)),
    "arithmetic": (r"has (-?\d+) \w+ now", lambda m, ex: m.group(1)),
    # "ends with ball B"; "ends with the red ball" in the long style and the earlier wordings
    "tracking": (r"ends with (?:ball ([ABC])\b|the (\w+) ball)", lambda m, ex: m.group(1) or next(
        (k for k, v in (ex.choices or {}).items() if v == f"{m.group(2)} ball"), None)),
}


def rationale_answer(example: Example, rationale: str) -> str | None:
    """The answer a rationale argues for. Scripted rationales conclude in the task's own terms
    ("So the coin ends tails up."), so their conclusion is read with the task's pattern; any other
    text goes through the generic :func:`extract_answer`."""
    key = example.task.removeprefix("synthetic/")
    if example.task.startswith("synthetic/") and key in _CONCLUSIONS:
        pattern, to_answer = _CONCLUSIONS[key]
        matches = list(re.finditer(pattern, rationale))
        return to_answer(matches[-1], example) if matches else None
    return extract_answer(rationale, example.answer_type, example.choices)


def scripted_rationale(example: Example, rng: random.Random, hallucinate: bool = False) -> str:
    """The scripted teacher's rationale for a synthetic example (from ``example.meta["problem"]``);
    with ``hallucinate`` it contains a wrong step or argues for a wrong answer."""
    return _write(example, rng, hallucinate)[0]


STYLES = ("short", "long")


def parse_spec(spec: str) -> tuple[str, str, int | None]:
    """``synthetic/NAME[:long[=TOKENS]]`` -> (NAME, style, tokens). The style rides on the task spec
    so every stage that loads the task (teach, train, the grid's cells and baselines) gets it."""
    name, _, style = spec.removeprefix("synthetic/").partition(":")
    style, _, tokens = style.partition("=")
    style = style or "short"
    if style not in STYLES or (tokens and (style != "long" or not tokens.isdigit())):
        raise UserError(f"bad synthetic task spec '{spec}'; write synthetic/NAME, synthetic/NAME:long "
                        "or synthetic/NAME:long=TOKENS")
    return name, style, int(tokens) if tokens else None


def with_style(spec: str, style: str | None, tokens: int | None = None) -> str:
    """``spec`` with a trace style (and length) added, for ``--style long --trace-tokens N``."""
    if not style and not tokens:
        return spec
    if not spec.startswith("synthetic/"):
        raise UserError(f"--style and --trace-tokens apply to synthetic tasks only, not '{spec}'")
    name, old, old_tokens = parse_spec(spec)
    style = style or old
    if style not in STYLES:
        raise UserError(f"unknown trace style '{style}'; valid: {', '.join(STYLES)}")
    tokens = tokens or old_tokens
    if tokens and style != "long":
        raise UserError("--trace-tokens needs --style long")
    return f"synthetic/{name}" + (f":long={tokens}" if tokens else ":long" if style == "long" else "")


def generate(task: str, n: int, seed: int = 0, hallucination: float = 0.0, *,
             split: str | None = None, style: str = "short", tokens: int | None = None) -> list[Example]:
    """``n`` examples of a synthetic task, deterministic in (task, n, seed, hallucination, split,
    style, tokens).

    Exactly ``round(hallucination * n)`` rationales are corrupted (chosen by a seeded rng that does
    not touch the questions: the same seed gives the same questions at any hallucination level and
    in either style). ``split`` "train" or "test" keeps only questions of that side of
    :func:`is_test_question`. ``style`` "long" writes reasoning-model traces of about ``tokens``
    tokens (:mod:`.long_traces`) instead of the short step-by-step rationales.
    """
    spec = _task_of(task)
    if not isinstance(n, int) or n < 0:
        raise UserError(f"n must be a non-negative integer, got {n!r}")
    if not 0.0 <= hallucination <= 1.0:
        raise UserError(f"hallucination must be between 0 and 1, got {hallucination}")
    if split not in (None, "train", "test"):
        raise UserError(f"unknown split '{split}' for a synthetic task; valid: train, test")
    if style not in STYLES:
        raise UserError(f"unknown trace style '{style}'; valid: {', '.join(STYLES)}")
    from .long_traces import (
        DEFAULT_TOKENS,
        MAX_TOKENS,
        MIN_TOKENS,
        long_trace,
        trace_tokens,
    )
    tokens = tokens or DEFAULT_TOKENS
    if style == "long" and not MIN_TOKENS <= tokens <= MAX_TOKENS:
        raise UserError(f"trace tokens must be between {MIN_TOKENS} and {MAX_TOKENS}, got {tokens}")
    rng = random.Random(f"{spec.name}/{seed}")
    bad = set(random.Random(f"{spec.name}/{seed}/hallucination").sample(range(n), round(hallucination * n)))
    examples: list[Example] = []
    while len(examples) < n:
        question, answer, problem, choices = spec.make(rng)
        if split is not None and is_test_question(question) != (split == "test"):
            continue
        i = len(examples)
        ex = Example(id=f"{spec.name}-{seed}-{i}", question=question, answer=answer,
                     answer_type=spec.answer_type, choices=choices, teacher_answer=answer,
                     task=f"synthetic/{spec.name}", meta={"problem": problem})
        if style == "long":  # its own rng stream: the short style's rationales stay as they were
            ex.rationale, mode = long_trace(spec.name, problem, random.Random(f"{spec.name}/{seed}/{i}/long"),
                                            i in bad, tokens)
            ex.meta.update(style="long", thinking_tokens=trace_tokens(ex.rationale))
        else:
            ex.rationale, mode = _write(ex, random.Random(f"{spec.name}/{seed}/{i}"), i in bad)
        ex.meta["hallucinated"] = mode is not None
        if mode:
            ex.meta["hallucination"] = mode
        examples.append(ex)
    return examples
