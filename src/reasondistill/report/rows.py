"""The rows of a compare grid: its ``methods`` entries, checked and normalised.

A row is a method name, or ``{name, method, options, student, training}`` (a variant, possibly built
on an earlier row through ``run:NAME``), or an evaluation-only row ``{name, evaluates, think_budget}``
that tests an earlier row's trained student under a thinking budget. Every row is checked when the
config loads (options by building the method once, training by TrainConfig), so a typo fails
before the first cell trains.
"""

from __future__ import annotations

from typing import Any

from ..commands import TrainConfig
from ..errors import UserError
from ..kd import KDConfig
from ..methods import METHODS, get_method
from ..options import build
from ..runfolder import check_name

RUN_REF = "run:"
LOADED = {"name", "method", "options", "training", "student", "evaluates", "think_budget"}  # a loaded row's keys


def method_entry(entry: Any, method_options: dict) -> dict:
    """``"pst"`` or ``{name: pst-infonce, method: pst, options: {alignment: infonce}}`` ->
    ``{name, method, options, training, student}``; a row may set its own ``student`` and
    ``training`` (merged over the grid's). The options are checked by building the method once."""
    if isinstance(entry, str):
        entry = {"name": entry, "method": entry}
    if not isinstance(entry, dict) or not (entry.get("method") or entry.get("name")):
        raise UserError(f"compare config: a method entry must be a name or {{name, method, options}}, got {entry!r}")
    unknown = sorted(set(entry) - {"name", "method", "options", "student", "training", "evaluates", "think_budget"})
    if unknown:
        raise UserError(f"compare config: method entry {entry!r} has unknown key(s) {', '.join(unknown)}")
    budget = _budget(entry)
    if entry.get("evaluates") is not None:
        # (a loaded config, loaded again, carries the evaluated row's method, options, ...: filled in below)
        extra = sorted(set(entry) & {"method", "options", "student", "training"}) if set(entry) != LOADED else []
        if extra or not entry.get("name"):
            raise UserError(f"compare config: evaluation row {entry!r} takes a name, 'evaluates' and 'think_budget' "
                            f"only{' (not ' + ', '.join(extra) + ')' if extra else ''}")
        return {"name": check_name(str(entry["name"]), "compare config: method name"), "method": None,
                "options": {}, "training": {}, "student": None, "evaluates": str(entry["evaluates"]),
                "think_budget": budget}
    method = str(entry.get("method") or entry["name"])
    name = check_name(str(entry.get("name") or method), "compare config: method name")  # it becomes a folder
    if method not in METHODS:
        raise UserError(f"compare config: unknown method '{method}'; valid: {', '.join(METHODS)}")
    options = {**dict(method_options.get(method) or {}), **(dict(method_options.get(name) or {}) if name != method
                                                            else {}), **dict(entry.get("options") or {})}
    kd = {k: v for k, v in options.items() if k in KDConfig.keys()}  # the trainer's KD options, allowed here
    get_method(method, **{k: v for k, v in options.items() if k not in kd})
    KDConfig.from_options(kd)
    training = dict(entry.get("training") or {})
    check_training(training, f"compare config: '{name}' training")
    student = entry.get("student")
    if budget is not None:
        get_method(method, **{k: v for k, v in options.items() if k not in kd}).check_budget(budget)
    return {"name": name, "method": method, "options": options, "training": training,
            "student": None if student is None else str(student), "evaluates": None, "think_budget": budget}


def _budget(entry: dict) -> int | None:
    """A row's ``think_budget``: a whole number of thinking tokens, or none/null for no limit."""
    value = entry.get("think_budget")
    if value is None or (isinstance(value, str) and value.lower() in ("none", "unlimited")):
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UserError(f"compare config: '{entry.get('name')}' think_budget must be a whole number >= 0 or none, "
                        f"not {value!r}")
    return value


def fill_evaluation_rows(methods: list[dict]) -> None:
    """An evaluation row takes the method, options and student of the row it evaluates (its labels
    and the budget check need them); that row must train (not only evaluate)."""
    by_name = {m["name"]: m for m in methods}
    for entry in methods:
        if entry["evaluates"] is None:
            continue
        source = by_name[entry["evaluates"]]
        if source["evaluates"] is not None:
            raise UserError(f"compare config: '{entry['name']}' evaluates '{source['name']}', which only evaluates "
                            "itself; name the row that trains")
        entry.update(method=source["method"], options=source["options"], student=source["student"],
                     training=source["training"])
        if entry["think_budget"] is not None:
            checker = get_method(source["method"], **{k: v for k, v in source["options"].items()
                                                      if k not in KDConfig.keys()})
            checker.check_budget(entry["think_budget"])


def check_training(training: dict, where: str) -> None:
    """A row's (or the grid's) ``training`` mapping: TrainConfig's keys, types and ranges."""
    if not isinstance(training, dict):
        raise UserError(f"{where} must be a mapping of train options")
    build(TrainConfig, [(f"file:{where}", training)], command=where)


def run_refs(entry: dict) -> list[str]:
    """The rows a method entry builds on: every ``run:NAME`` among its options and its student."""
    values = [entry.get("student"), *entry["options"].values()]
    refs = [v[len(RUN_REF):] for v in values if isinstance(v, str) and v.startswith(RUN_REF)]
    return refs + ([entry["evaluates"]] if entry.get("evaluates") else [])


def check_run_refs(methods: list[dict]) -> None:
    """A ``run:NAME`` must name a row listed before it, so the grid has trained it when it is needed."""
    seen: set[str] = set()
    for entry in methods:
        for ref in run_refs(entry):
            if ref not in seen:
                where = "comes after it" if ref in {m["name"] for m in methods} else "is not in the grid"
                raise UserError(f"compare config: '{entry['name']}' builds on run:{ref}, which {where}; "
                                "list that row first")
        seen.add(entry["name"])
