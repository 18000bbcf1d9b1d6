"""reasondistill: distil a teacher LLM's reasoning into a small, fast student.

The Python API mirrors the CLI: ``train``, ``evaluate`` and ``demo`` take the same options and
write the same run folders.
"""

from .api import demo, evaluate, load_run, train
from .errors import UserError

__version__ = "0.1.0"
__all__ = ["UserError", "demo", "evaluate", "load_run", "train", "__version__"]
