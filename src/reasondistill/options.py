"""One option system: a typed definition per command gives its CLI flags, YAML keys and API keywords.

Every command's options are one pydantic model (``TrainOptions``, ``EvalOptions``, ``TeachOptions``,
...): a field per option with its type, default, help text and allowed range. From that one
definition come

- the CLI flags (:func:`add_flags`: ``max_steps`` -> ``--max-steps``, help text and default shown),
- the YAML keys of ``--config FILE`` (the field names; ``max-steps`` is accepted too),
- the Python API keywords (:func:`takes` gives ``reasondistill.train`` the model's signature),

and all three are checked by the same :func:`build`: an unknown key or flag, a wrong type or a
value out of range is one line naming the key and where it came from (the YAML file, the flag, the
keyword), raised as a ``UserError`` (exit 2) before any work starts. Methods define their own
options the same way (``class Options(MethodOptions)`` in each method file); ``reasondistill
methods show NAME`` prints them, and ``--option KEY=VALUE`` is checked against them.

**Adding an option is one field** in the command's model, e.g. in ``TrainOptions``::

    gradient_checkpointing: bool = opt(False, "recompute activations in backward to save memory")

gives ``--gradient-checkpointing`` (a bool defaulting to False is a switch; one defaulting to True
gets ``--x/--no-x``), the YAML key ``gradient_checkpointing:`` and ``train(gradient_checkpointing=True)``;
the value reaches the command's code as ``options.gradient_checkpointing``. Ranges are pydantic's
``ge``/``gt``/``le``/``lt`` keywords of :func:`opt`; choices are a ``Literal[...]`` annotation.

Why pydantic rather than transformers' ``HfArgumentParser`` or jsonargparse: ``HfArgumentParser``
makes flags from dataclasses but fills YAML and dict values in unchecked (``max_steps: "five"``
reaches the trainer) and has no ranges; jsonargparse checks types but names flags with underscores,
prints multi-line usage errors, and would own the whole parser while commands here register their
own subparsers. pydantic (already installed with fastapi and openai) validates types, choices and
ranges the same way for flags, files and keywords and reports where each error is (``loc``), which
is what one clear line needs. The argparse glue below is small because argparse stays the parser.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import os
from collections.abc import Callable
from typing import Any, ClassVar, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticUndefined

from .errors import UserError

REQUIRED: Any = ...  # opt(REQUIRED, ...): the command cannot run without it


def opt(default: Any, help: str, *, flags: list[str] | None = None, action: str | None = None,
        cli: bool = True, positional: bool = False, metavar: str | None = None, **limits: Any) -> Any:
    """One option: its default, help text, and how it appears on the command line.

    ``flags`` replaces the default ``--name-with-dashes`` (e.g. ``["--quiet"]`` with
    ``action="store_false"``); ``cli=False`` keeps an option to the API and YAML; ``limits`` are
    pydantic's ``ge``, ``gt``, ``le``, ``lt``."""
    extra = {"flags": flags, "action": action, "cli": cli, "positional": positional, "metavar": metavar}
    return Field(default, description=help, json_schema_extra=extra, **limits)


class Options(BaseModel):
    """Base of every command's options: unknown keys refused, values checked on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())
    command: ClassVar[str] = ""  # how errors name the command: "train", "eval", ...

    @model_validator(mode="before")
    @classmethod
    def _paths_as_text(cls, values: Any) -> Any:
        """``pathlib.Path`` values (out, data, model...) are their text: the API takes either."""
        if isinstance(values, dict):
            return {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in values.items()}
        return values

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump()

    def subset(self, model: type[Options]) -> dict[str, Any]:
        """The values of the fields ``model`` shares with these options (e.g. TrainConfig's)."""
        return {k: getattr(self, k) for k in model.model_fields if k in type(self).model_fields}


def option_fields(model: type[Options]) -> dict[str, Any]:
    return dict(model.model_fields)


def _extra(field) -> dict[str, Any]:
    return field.json_schema_extra or {}


def flag_name(name: str, field=None) -> str:
    flags = _extra(field).get("flags") if field is not None else None
    return flags[0] if flags else "--" + name.replace("_", "-")


# ----- validation --------------------------------------------------------------------------------

def _where(origin: str, key: str, model: type[Options]) -> str:
    """How to name ``key`` for the user: the flag, the file and its key, the keyword, the method option."""
    if origin == "flags":
        return flag_name(key, model.model_fields.get(key))
    kind, _, name = origin.partition(":")
    if kind == "keyword":
        return f"{name}({key}=...)"
    if kind == "method":
        return f"method '{name}' option '{key}'"
    return f"{name}: {key}"  # file:PATH


def _error_line(err: dict, model: type[Options], origins: dict[str, str], command: str, api: bool) -> str:
    loc = [str(p) for p in err["loc"]]
    key = loc[0] if loc else "?"
    where = _where(origins.get(key, "keyword:" + command), key, model)
    known = list(option_fields(model))
    if err["type"] == "extra_forbidden":
        close = difflib.get_close_matches(key, known, n=1)
        return f"{where}: unknown option" + (f" (did you mean '{close[0]}'?)" if close else f"; valid: {', '.join(known)}")
    if err["type"] == "missing":
        if api:
            return f"{command}() needs {key}"
        if _extra(model.model_fields[key]).get("positional"):
            return f"{command} needs {key.upper()}"
        if not _extra(model.model_fields[key]).get("cli", True):
            return f"{command} needs '{key}:' in its --config file"
        return f"{command} needs {flag_name(key, model.model_fields.get(key))} (or '{key}:' in --config)"
    sub = "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc[1:])
    msg = err["msg"][0].lower() + err["msg"][1:]
    return f"{where}{sub}: {msg}, got {err.get('input')!r}"


def build(model: type[Options], sources: list[tuple[str, dict[str, Any]]], command: str | None = None):
    """Options of ``model`` from ``sources`` in rising priority, each ``(origin, values)`` where
    origin is ``"file:PATH"``, ``"flags"``, ``"keyword:FUNC"`` or ``"method:NAME"``. Dict-valued
    options (method options) merge key by key; any error is one UserError line naming the key and
    where it came from."""
    command = command or model.command or model.__name__
    merged: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for origin, values in sources:
        for key, value in values.items():
            if origin.startswith("file:"):
                key = str(key).replace("-", "_")
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                value = {**merged[key], **value}
            merged[key] = value
            origins[key] = origin
    try:
        return model.model_validate(merged)
    except ValidationError as e:
        api = all(o.startswith(("keyword:", "method:")) for o, _ in sources)
        # A typo'd key explains a "missing" one, so unknown keys are named first, missing ones last.
        first = sorted(e.errors(), key=lambda err: {"extra_forbidden": 0, "missing": 2}.get(err["type"], 1))[0]
        raise UserError(_error_line(first, model, origins, command, api)) from None


def from_yaml(path: str) -> dict[str, Any]:
    from .io import read_yaml_mapping
    return read_yaml_mapping(path)


def parse_command(model: type[Options], args: argparse.Namespace, command: str | None = None):
    """A command's options from its parsed flags and, under them, its ``--config`` file."""
    flags = {k: v for k, v in vars(args).items() if k not in ("func", "config", "command")}
    sources: list[tuple[str, dict]] = []
    if getattr(args, "config", None):
        sources.append(("file:" + str(args.config), from_yaml(args.config)))
    sources.append(("flags", flags))
    return build(model, sources, command)


# ----- the command line --------------------------------------------------------------------------

class KeyValueAction(argparse.Action):
    """``--option KEY=VALUE`` (repeatable) into a dict; the value is read as YAML (numbers, bools)."""

    def __call__(self, parser, namespace, value, option_string=None):
        import yaml
        if "=" not in value:
            raise UserError(f"{option_string} expects KEY=VALUE, got '{value}'")
        key, text = value.split("=", 1)
        try:
            parsed = yaml.safe_load(text)
        except yaml.YAMLError:
            parsed = text
        current = dict(getattr(namespace, self.dest, None) or {})
        current[key.strip().replace("-", "_")] = parsed
        setattr(namespace, self.dest, current)


def _type_words(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return "|".join(str(a) for a in get_args(annotation))
    args = [a for a in get_args(annotation) if a is not type(None)]
    if args:
        return " or ".join(_type_words(a) for a in args)
    return getattr(annotation, "__name__", str(annotation))


def _choices(annotation: Any) -> tuple | None:
    if get_origin(annotation) is Literal:
        return get_args(annotation)
    inner = [a for a in get_args(annotation) if get_origin(a) is Literal]
    return get_args(inner[0]) if inner else None


def _is_list(annotation: Any) -> bool:
    return get_origin(annotation) is list or any(get_origin(a) is list for a in get_args(annotation))


def help_text(field) -> str:
    text = field.description or ""
    default = field.default
    if default is PydanticUndefined or default is ...:
        return text + " (required)"
    if default not in (None, "", [], {}) and not isinstance(default, bool):
        text += f" (default {default})"
    return text


def add_flags(parser: argparse.ArgumentParser, model: type[Options], *, config: bool = True) -> None:
    """Add a flag per option of ``model`` to ``parser``. Values stay strings here and are typed by
    :func:`build`, so flags, files and keywords share one check. Flags left out stay out of the
    namespace (``SUPPRESS``), so ``--config`` values can fill them."""
    S = argparse.SUPPRESS
    if config:
        parser.add_argument("--config", default=S, metavar="FILE",
                            help="YAML file of these options (keys as the flags, with underscores); flags win")
    fields = option_fields(model)
    order = sorted(fields, key=lambda n: fields[n].default is not PydanticUndefined)  # required first
    for name in order:
        field = fields[name]
        extra = _extra(field)
        if not extra.get("cli", True):
            continue
        kwargs: dict[str, Any] = {"help": help_text(field), "default": S}
        if extra.get("metavar"):
            kwargs["metavar"] = extra["metavar"]
        action = extra.get("action")
        if extra.get("positional"):
            parser.add_argument(name, nargs="?", **kwargs)  # may come from --config; build() says if missing
            continue
        flags = extra.get("flags") or ["--" + name.replace("_", "-")]
        choices = _choices(field.annotation)
        if action == "key_value":
            kwargs.update(action=KeyValueAction, metavar="KEY=VALUE")
        elif action:
            kwargs["action"] = action
        elif _is_list(field.annotation):
            kwargs["nargs"] = "+"
        elif field.annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction if field.default is True else "store_true"
        elif choices:
            kwargs["choices"] = [str(c) for c in choices]
        parser.add_argument(*flags, dest=name, **kwargs)


# ----- the Python API ---------------------------------------------------------------------------

def takes(model: type[Options], positional: tuple[str, ...] = ()) -> Callable:
    """Give an API function ``f(**options)`` the signature of ``model`` (``help()`` and editors
    show every option with its default) and the options' help in its docstring."""
    def decorate(func: Callable) -> Callable:
        params = []
        for name, field in option_fields(model).items():
            default = inspect.Parameter.empty if field.default is PydanticUndefined else field.default
            kind = inspect.Parameter.POSITIONAL_OR_KEYWORD if name in positional else inspect.Parameter.KEYWORD_ONLY
            params.append(inspect.Parameter(name, kind, default=default, annotation=field.annotation))
        params.sort(key=lambda p: (p.kind, positional.index(p.name) if p.name in positional else 0))
        required_after = False  # a positional before a required one cannot show a default
        for i in reversed(range(len(positional))):
            if params[i].default is inspect.Parameter.empty:
                required_after = True
            elif required_after:
                params[i] = params[i].replace(default=inspect.Parameter.empty)
        func.__signature__ = inspect.Signature(params)
        lines = [f"    {name}: {help_text(f)}" for name, f in option_fields(model).items()]
        func.__doc__ = (func.__doc__ or "") + "\n\n    Options (the CLI's flags, also YAML keys):\n" + "\n".join(lines)
        return func
    return decorate


def call_values(func_name: str, positional_names: tuple[str, ...], args: tuple, kwargs: dict) -> dict[str, Any]:
    """Positional and keyword arguments of an API call as one mapping (too many positionals: error)."""
    if len(args) > len(positional_names):
        raise UserError(f"{func_name}() takes {len(positional_names)} positional arguments "
                        f"({', '.join(positional_names)}); pass the rest as keywords")
    values = dict(zip(positional_names, args))
    clash = sorted(set(values) & set(kwargs))
    if clash:
        raise UserError(f"{func_name}() got {', '.join(clash)} both as positional and keyword")
    return {**values, **kwargs}


# ----- method options ---------------------------------------------------------------------------

class MethodOptions(Options):
    """Options every method accepts: Masked Thought. (Token-level KD is the trainer's: its options
    live in ``commands.TrainConfig``, and a method's option mapping may carry them to it.)"""

    mask_rationale: float = opt(0.0, "Masked Thought: replace this fraction of rationale input tokens by pad",
                                ge=0, lt=1)


def method_option_values(model: type[Options], given: dict[str, Any], method: str) -> dict[str, Any]:
    """A method's options (defaults filled in, types and ranges checked); errors name the method."""
    return build(model, [("method:" + method, given)], command=f"method '{method}'").as_dict()


def describe(model: type[Options]) -> list[str]:
    """One line per option: name, type, default, help (``methods show``, ``--help``)."""
    out = []
    fields = option_fields(model)
    own = [n for n in fields if n not in MethodOptions.model_fields] + [n for n in fields if n in MethodOptions.model_fields]
    for name in own:
        field = fields[name]
        out.append(f"  {name:<22} {_type_words(field.annotation):<24} {field.default!r:<20} {field.description or ''}")
    return out


def parse_method_pairs(pairs: list[str]) -> dict[str, Any]:
    """``["k=v", ...]`` as a dict (for callers that hold pairs rather than flags)."""
    ns = argparse.Namespace()
    action = KeyValueAction(["--option"], "option")
    for pair in pairs:
        action(None, ns, pair, "--option")
    return dict(getattr(ns, "option", {}) or {})


class Parser(argparse.ArgumentParser):
    """argparse, but a bad or unknown flag is one line (a UserError, exit 2) instead of usage + error."""

    def error(self, message: str):  # type: ignore[override]
        raise UserError(f"{message} (see {self.prog} --help)")
