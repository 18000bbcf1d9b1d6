"""Small file helpers shared by every stage: atomic writes and one checked way to read text.

Atomic writes (temp file in the same folder, fsync, rename) mean a crash never leaves a half-written
metrics or rationale file behind; a reader sees the old file or the new one. The file gets the mode
an ordinary ``open`` would give it (0666 less the umask), not ``mkstemp``'s private 0600, so another
user or a serving container can read a run folder.

Every input file (data, YAML, few-shot examples, results.json) is read through :func:`read_text` or
:func:`read_jsonl`, which turn bytes that are not UTF-8 into ``file:line: not valid UTF-8`` (a
``UserError``, exit 2) instead of a traceback.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import UserError


_UMASK_LOCK = threading.Lock()


def file_mode() -> int:
    """0666 less the process umask: the mode ``open(path, "w")`` gives a new file. (The umask can
    only be read by setting it, hence the lock.)"""
    with _UMASK_LOCK:
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` so that readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, file_mode())
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


def _decode(data: bytes, path: Path, first_line: int = 1) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = first_line + data.count(b"\n", 0, e.start)
        raise UserError("not valid UTF-8", path=str(path), line=line) from None


def read_text(path: str | os.PathLike) -> str:
    """A whole text file; missing files and bytes that are not UTF-8 are one-line UserErrors."""
    path = Path(path)
    if not path.exists():
        raise UserError("file not found", path=str(path))
    if path.is_dir():
        raise UserError("is a folder, expected a file", path=str(path))
    text = _decode(path.read_bytes(), path)
    return text.removeprefix("\ufeff")  # a UTF-8 byte-order mark is not content


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, record)``; a malformed line raises a UserError naming file and line."""
    path = Path(path)
    if not path.exists():
        raise UserError("file not found", path=str(path))
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            line = _decode(raw, path, number)
            if number == 1:
                line = line.removeprefix("\ufeff")
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
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"malformed JSON ({e.msg})", path=str(path), line=e.lineno) from None


def read_yaml_mapping(path: str | os.PathLike) -> dict:
    """A YAML file of options (``--config``, compare grids): a mapping, or a one-line UserError."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserError("config file not found", path=str(path))
    try:
        loaded = yaml.safe_load(read_text(path)) or {}
    except yaml.YAMLError as e:
        raise UserError(f"malformed YAML ({str(e).splitlines()[0]})", path=str(path)) from None
    if not isinstance(loaded, dict):
        raise UserError("expected a mapping of option names to values", path=str(path))
    return loaded
