"""Reaching the Hugging Face hub, or failing fast when it cannot be reached.

Offline, ``from_pretrained`` and ``load_dataset`` retry for the better part of a minute before
they give up with a traceback. A student, teacher or dataset named by hub id is usually either in
the local cache or a typo, so we look once (a short TCP connect, remembered for the process) and,
without a hub, load from the cache only; what is not cached becomes one line that says how to
point at a local copy.
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

from .errors import UserError

PROBE_TIMEOUT_S = 3.0
_TRUE = {"1", "true", "yes", "on"}


def offline_by_env() -> bool:
    """The user said so: ``HF_HUB_OFFLINE`` (or the older ``TRANSFORMERS_OFFLINE`` / ``HF_DATASETS_OFFLINE``)."""
    return any(os.environ.get(k, "").strip().lower() in _TRUE
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"))


@lru_cache(maxsize=1)
def hub_reachable() -> bool:
    """Whether the hub endpoint (``HF_ENDPOINT`` or huggingface.co) accepts a TCP connection."""
    if offline_by_env():
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((url.hostname or "huggingface.co", port), timeout=PROBE_TIMEOUT_S).close()
        return True
    except OSError:
        pass
    # The libraries read offline mode once, at import: tell them now, so nothing of theirs (file
    # lookups, agent registries) waits on the network for the rest of this process.
    import huggingface_hub.constants
    huggingface_hub.constants.HF_HUB_OFFLINE = True
    return False


def is_hub_id(spec: str) -> bool:
    """``gpt2`` or ``org/name`` (optionally ``@revision``): what the hub accepts as a repo id."""
    name = spec.split("@")[0]
    parts = name.split("/")
    ok = all(p and all(c.isalnum() or c in "-_." for c in p) and not p.startswith(".") for p in parts)
    return ok and 1 <= len(parts) <= 2


def local_only(spec: str) -> bool:
    """Load ``spec`` from disk or cache alone: a folder, or a hub id while the hub is out of reach."""
    return Path(spec).exists() or not hub_reachable()


def not_cached(what: str, spec: str, *, dataset: bool = False) -> UserError:
    """The one line for a hub id that is neither cached nor downloadable."""
    fetch = f"hf download {spec}{' --repo-type dataset' if dataset else ''} --local-dir DIR"
    use = "pass a JSONL file exported from DIR as --data" if dataset else "pass the folder DIR instead"
    return UserError(f"{what} '{spec}' is not in the local Hugging Face cache and the hub cannot be reached "
                     f"(offline); download it where there is network (`{fetch}`) and {use}, "
                     "or set HF_HOME to a cache that holds it")
