"""Side-by-side comparisons: the grid runner (``compare``, in grid.py) and the HTML/PNG report
(``report``, in html.py and plots.py).

Nothing heavy is imported here: ``reasondistill --help`` imports this package to register its
commands, and torch/matplotlib should load only when a comparison or a report is made.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path


def compare(config: str | Path | dict, *, progress: bool = True, **overrides) -> dict:
    """Train and evaluate every cell of the grid in ``config`` (a YAML path or a dict), skipping
    finished cells; write ``results.json`` and the HTML report. ``overrides`` are the grid's keys
    (``out=``, ``report=False``, ``seeds=[0, 1]``, ...; see report/config.py) over the file's."""
    from .grid import compare as run_grid
    return run_grid(config, progress=progress, **overrides)


def report(run_dir: str | Path, *, out: str | Path | None = None) -> Path:
    """Write the self-contained HTML report (and its PNGs) for a compare folder or any folder of
    evaluated runs. Returns the HTML path."""
    from .html import write_report
    return write_report(run_dir, out)


class _CallableModule(types.ModuleType):
    """``reasondistill.report`` is both this package and the ``report`` function: once the package
    is imported, Python binds the package to that name, so calling it must still make a report."""

    def __call__(self, run_dir: str | Path, *, out: str | Path | None = None) -> Path:
        return report(run_dir, out=out)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["compare", "report"]
