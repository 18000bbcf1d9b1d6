"""The wordings of the scripted tracking rationale tried in the settings search, kept so its rows
can be replayed (``--tracking-wording``). The built-in wording (tasks/synthetic.py) is ``asker``:
each ball followed forward, then one more swap, of the asked person with "Asker", so the asker ends
up with the asked person's ball and the conclusion copies the letter after "Asker gets".

- ``swap-so`` (the first built-in wording): "A and B swap, so A has X and B has Y": each colour is a
  lookup of the other person's latest ball through every swap before it.
- ``had-gets``: "A and B swap: A had X and B had Y, so A gets Y and B gets X." The swap itself is
  a copy of two words in the same sentence; only the "had" colours need a lookup by name.
- ``state``: the three holdings restated in the question's order, first as the question gives them
  and after every swap: "A has X, B has Y, C has Z. A and B swap: A has Y, B has X, C has Z."
  Copying an unchanged holding is a copy from the same place in the previous line.
- ``back``: the asked person's ball traced back from the last swap to the first ("so before that it
  was B's"), then that person's colour at the start: one name per step, but the swaps are copied in
  reverse order.
- ``balls``: each ball followed forward, "... So the red ball ends with B."; the conclusion "So A
  ends with the red ball." needs the colour three words before the asked name.
- ``balls-reworded`` (the second built-in wording): ``balls`` with each trace ending "So B ends with
  the red ball." and the conclusion repeating the asked person's sentence, found among three.
- ``letters``/``gets``: ``balls-reworded`` with each ball named by its answer letter; the
  conclusion still finds the asked person's trace end by name.
- ``check`` (the third built-in wording): each ball followed forward, then "The question asks about
  X: no." or "...: yes, C.", a yes/no on two names a few words apart; the conclusion copies the
  letter after the one "yes".
- ``asker``: the built-in wording, so its rows replay under the name they were logged with.

``use(name)`` swaps the task's ``_track`` and ``_conclude`` for the variant's in this process, before
any data is made.
"""

from __future__ import annotations

from reasondistill.tasks.synthetic import (
    _conclude,
    _follow_balls,
    _holder_after,
    _track,
    ball_by_letter,
)


def _replay(p: dict, skip: int) -> tuple[list[tuple[int, int, list[str], list[str]]], int]:
    """Each swap as (a, b, colours before, colours after), a colour per person in the question's
    order, and the ball the asked person ends with; the skipped swap (the hallucinated step) is
    told as if nothing changed."""
    balls, holding, steps = p["balls"], list(range(3)), []
    for k, (a, b) in enumerate(p["swaps"]):
        before = [balls[i] for i in holding]
        if k != skip:
            holding[a], holding[b] = holding[b], holding[a]
        steps.append((a, b, before, [balls[i] for i in holding]))
    return steps, holding[p["target"]]


def _swap_so(p: dict, skip: int = -1) -> tuple[list[str], int]:
    names, (steps, final) = p["names"], _replay(p, skip)
    return [f"{names[a]} and {names[b]} swap, so {names[a]} has {now[a]} and {names[b]} has {now[b]}."
            for a, b, _, now in steps], final


def _had_gets(p: dict, skip: int = -1) -> tuple[list[str], int]:
    names, (steps, final) = p["names"], _replay(p, skip)
    return [f"{names[a]} and {names[b]} swap: {names[a]} had {was[a]} and {names[b]} had {was[b]}, "
            f"so {names[a]} gets {now[a]} and {names[b]} gets {now[b]}." for a, b, was, now in steps], final


def _state(p: dict, skip: int = -1) -> tuple[list[str], int]:
    names, (steps, final) = p["names"], _replay(p, skip)

    def state(colours: list[str]) -> str:
        return ", ".join(f"{name} has {colour}" for name, colour in zip(names, colours))

    return [f"{state(steps[0][2])}."] + [f"{names[a]} and {names[b]} swap: {state(now)}."
                                         for a, b, _, now in steps], final


def _back(p: dict, skip: int = -1) -> tuple[list[str], int]:
    names, balls, swaps = p["names"], p["balls"], p["swaps"]
    who, sents = p["target"], [f"Trace {names[p['target']]}'s ball back from the end."]
    for k in reversed(range(len(swaps))):
        a, b = swaps[k]
        if k != skip:  # a swap is its own inverse: whose ball it was before is who holds it after
            who = _holder_after(a, b, who)
        sents.append(f"{names[a]} and {names[b]} swap, so before that it was {names[who]}'s.")
    sents.append(f"{names[who]} has a {balls[who]} ball at the start.")
    return sents, who


def _balls(p: dict, skip: int = -1) -> tuple[list[str], int]:
    colour = p["balls"]
    return _follow_balls(p, skip, lambda name, ball: f"The {colour[ball]} ball: {name} has it.",
                   lambda name, ball: f"So the {colour[ball]} ball ends with {name}.")


def _balls_reworded(p: dict, skip: int = -1) -> tuple[list[str], int]:
    colour = p["balls"]
    return _follow_balls(p, skip, lambda name, ball: f"The {colour[ball]} ball: {name} has it.",
                   lambda name, ball: f"So {name} ends with the {colour[ball]} ball.")


def _letters(p: dict, skip: int = -1) -> tuple[list[str], int]:
    return _follow_balls(p, skip, ball_by_letter, lambda name, ball: f"So {name} ends with ball {'ABC'[ball]}.")


def _gets(p: dict, skip: int = -1) -> tuple[list[str], int]:
    return _follow_balls(p, skip, ball_by_letter, lambda name, ball: f"So {name} gets {'ABC'[ball]}.")


def _check(p: dict, skip: int = -1) -> tuple[list[str], int]:
    target = p["names"][p["target"]]

    def last(name: str, ball: int) -> str:
        letter = "ABC"[ball]
        return (f"So {name} gets {letter}. The question asks about {target}: "
                + (f"yes, {letter}." if name == target else "no."))
    return _follow_balls(p, skip, ball_by_letter, last)


def _conclude_colour(p: dict, final: int) -> str:
    """The conclusion the first four wordings were measured with."""
    return f"So {p['names'][p['target']]} ends with the {p['balls'][final]} ball."


def _conclude_balls(p: dict, final: int) -> str:
    """The conclusion of ``balls-reworded`` while it was the built-in wording."""
    target = p["names"][p["target"]]
    return f"The question asks about {target}, so {target} ends with the {p['balls'][final]} ball."


def _conclude_letters(p: dict, final: int) -> str:
    target = p["names"][p["target"]]
    return f"The question asks about {target}, so {target} ends with ball {'ABC'[final]}."


def _conclude_gets(p: dict, final: int) -> str:
    target = p["names"][p["target"]]
    return f"The question asks about {target}, and {target} gets {'ABC'[final]}."


WORDINGS = {name: (track, _conclude_colour) for name, track in
            [("had-gets", _had_gets), ("state", _state), ("back", _back), ("swap-so", _swap_so), ("balls", _balls)]}
WORDINGS.update({"balls-reworded": (_balls_reworded, _conclude_balls), "letters": (_letters, _conclude_letters),
                 "gets": (_gets, _conclude_gets), "check": (_check, _conclude),
                 "asker": (_track, _conclude)})


def use(name: str) -> None:
    from reasondistill.tasks import synthetic
    synthetic._track, synthetic._conclude = WORDINGS[name]
