"""Small file helpers shared by every stage: atomic writes and line-numbered JSON(L) reading.

Atomic writes (temp file in the same folder, fsync, rename) mean a crash never leaves a half-written
metrics or rationale file behind; a reader sees the old file or the new one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import UserError


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` so that readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def atomic_write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def append_jsonl(path: str | os.PathLike, row: dict, *, fsync: bool = False) -> None:
    """Append one record; with ``fsync`` the line survives a SIGKILL right after the call."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
        if fsync:
            f.flush()
            os.fsync(f.fileno())


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, record)``; a malformed line raises a UserError naming file and line."""
    path = Path(path)
    if not path.exists():
        raise UserError("file not found", path=str(path))
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"malformed JSON ({e.msg})", path=str(path), line=number) from None
            if not isinstance(record, dict):
                raise UserError("expected a JSON object per line", path=str(path), line=number)
            yield number, record


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.exists():
        raise UserError("file not found", path=str(path))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"malformed JSON ({e.msg})", path=str(path), line=e.lineno) from None


def read_yaml_mapping(path: str | os.PathLike) -> dict:
    """A YAML file of options (``--config``, compare grids): a mapping, or a one-line UserError."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserError("config file not found", path=str(path))
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise UserError(f"malformed YAML ({str(e).splitlines()[0]})", path=str(path)) from None
    if not isinstance(loaded, dict):
        raise UserError("expected a mapping of option names to values", path=str(path))
    return loaded
