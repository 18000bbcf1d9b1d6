"""reasondistill: distil a teacher LLM's reasoning into a small, fast student.

The Python API mirrors the CLI: ``teach``, ``train``, ``evaluate``, ``compare``, ``report`` and
``demo`` take the same options and write the same files. They are imported on first use, so
``import reasondistill`` (and ``reasondistill --help``) stays quick and torch loads only when needed.
"""

from importlib import import_module
from typing import Any

from .errors import UserError

__version__ = "0.1.0"
_API = {"demo": ".api", "evaluate": ".api", "load_run": ".api", "train": ".api",
        "compare": ".report", "report": ".report", "teach": ".teachers.cli"}
__all__ = ["UserError", "__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module(_API[name], __name__), name)
    raise AttributeError(f"module 'reasondistill' has no attribute '{name}'")
