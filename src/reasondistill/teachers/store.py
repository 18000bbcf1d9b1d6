"""The durable call store: every finished teacher call, keyed by a hash of what was asked.

Teacher calls cost money and time, so a killed ``teach`` must lose none of them and repeat none.
Each completed call is committed to SQLite in WAL mode the moment it returns, before its result is
used. WAL with ``synchronous=NORMAL`` keeps a commit safe from a killed process (SIGKILL, OOM,
Ctrl-C) at ~0.1 ms per call; only a power cut can roll back the last few commits, and those calls
are then simply asked again. The key hashes the teacher's identity (kind, model, server URL, API,
extra body), the prompt, sampling parameters, sample index and whatever else of the call decides
the answer (the scripted teacher's example), so changing any of them asks again while an identical
rerun asks nothing. A batch-API submission is recorded here too (its id and its rows' keys) the
moment it is created, so a killed run polls the same batch instead of paying for a second one.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from ..errors import UserError
from .base import Completion


def call_key(identity: dict[str, Any], prompt: str, params: dict[str, Any], sample: int,
             call: dict[str, Any] | None = None) -> str:
    """A stable hash of everything that decides a teacher's answer to one call."""
    blob = json.dumps({"teacher": identity, "prompt": prompt, "params": params, "sample": sample,
                       "call": call or {}}, sort_keys=True, ensure_ascii=False)
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
            self._db.execute("CREATE TABLE IF NOT EXISTS batches (id TEXT PRIMARY KEY, keys TEXT NOT NULL, "
                             "done INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL)")
            keys = self._db.execute("SELECT key FROM calls").fetchall()
        except sqlite3.DatabaseError as e:
            raise UserError(f"not a reasondistill call store ({e})", path=str(self.path)) from None
        self._keys: set[str] = {k for (k,) in keys}  # texts stay on disk until asked for

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def get(self, key: str) -> Completion | None:
        if key not in self._keys:
            return None
        (response,) = self._db.execute("SELECT response FROM calls WHERE key = ?", (key,)).fetchone()
        return Completion.from_dict(json.loads(response))

    def put(self, key: str, request: dict[str, Any], completion: Completion) -> None:
        """Commit one finished call; after this returns the call survives a killed process."""
        self._db.execute("INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?)",
                         (key, json.dumps(request, ensure_ascii=False),
                          json.dumps(completion.to_dict(), ensure_ascii=False), time.time()))
        self._keys.add(key)

    def open_batch(self) -> tuple[str, list[str]] | None:
        """The submitted batch whose results are not stored yet (id, row keys), if any."""
        row = self._db.execute("SELECT id, keys FROM batches WHERE done = 0 ORDER BY created LIMIT 1").fetchone()
        return (row[0], json.loads(row[1])) if row else None

    def add_batch(self, batch_id: str, keys: list[str]) -> None:
        self._db.execute("INSERT OR REPLACE INTO batches VALUES (?, ?, 0, ?)",
                         (batch_id, json.dumps(keys), time.time()))

    def close_batch(self, batch_id: str) -> None:
        self._db.execute("UPDATE batches SET done = 1 WHERE id = ?", (batch_id,))

    def batches(self) -> int:
        (n,) = self._db.execute("SELECT COUNT(*) FROM batches").fetchone()
        return n

    def teachers(self) -> dict[str, int]:
        """How many stored calls each teacher identity (as canonical JSON) answered."""
        rows = self._db.execute("SELECT json_extract(request, '$.teacher'), COUNT(*) FROM calls GROUP BY 1")
        return {json.dumps(json.loads(t) if t else None, sort_keys=True): n for t, n in rows}

    def requests(self) -> list[dict[str, Any]]:
        """Every stored request in insertion order (benchmarks replay them)."""
        return [json.loads(r) for (r,) in self._db.execute("SELECT request FROM calls ORDER BY rowid")]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "CallStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
