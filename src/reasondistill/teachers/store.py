"""The durable call store: every finished teacher call, keyed by a hash of what was asked.

Teacher calls cost money and time, so a killed ``teach`` must lose none of them and repeat none.
Each completed call is committed to SQLite in WAL mode the moment it returns, before its result is
used. WAL with ``synchronous=NORMAL`` keeps a commit safe from a killed process (SIGKILL, OOM,
Ctrl-C) at ~0.1 ms per call; only a power cut can roll back the last few commits, and those calls
are then simply asked again. The key hashes the teacher, model, prompt, sampling parameters and
sample index, so changing any of them asks again while an identical rerun asks nothing.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from ..errors import UserError


def call_key(identity: dict[str, Any], prompt: str, params: dict[str, Any], sample: int) -> str:
    """A stable hash of everything that decides a teacher's answer to one call."""
    blob = json.dumps({"teacher": identity, "prompt": prompt, "params": params, "sample": sample},
                      sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class CallStore:
    """Finished calls: their keys in memory, their texts on disk, appended (committed) one by one."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, request TEXT NOT NULL, "
                             "response TEXT NOT NULL, created REAL NOT NULL)")
            keys = self._db.execute("SELECT key FROM calls").fetchall()
        except sqlite3.DatabaseError as e:
            raise UserError(f"not a reasondistill call store ({e})", path=str(self.path)) from None
        self._keys: set[str] = {k for (k,) in keys}  # texts stay on disk until asked for

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def get(self, key: str) -> str | None:
        if key not in self._keys:
            return None
        (response,) = self._db.execute("SELECT response FROM calls WHERE key = ?", (key,)).fetchone()
        return json.loads(response)["text"]

    def put(self, key: str, request: dict[str, Any], text: str) -> None:
        """Commit one finished call; after this returns the call survives a killed process."""
        self._db.execute("INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?)",
                         (key, json.dumps(request, ensure_ascii=False), json.dumps({"text": text}, ensure_ascii=False),
                          time.time()))
        self._keys.add(key)

    def requests(self) -> list[dict[str, Any]]:
        """Every stored request in insertion order (benchmarks replay them)."""
        return [json.loads(r) for (r,) in self._db.execute("SELECT request FROM calls ORDER BY rowid")]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "CallStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
