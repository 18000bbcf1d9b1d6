"""What every benchmark script shares: where and with what a result was measured, and a main
wrapper that turns a user mistake into one line instead of a stack trace."""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path


def machine() -> dict:
    import torch
    info = {"node": platform.node(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    info["description"] = info.get("gpu") or f"{info['cpus']} CPU cores ({platform.machine()})"
    return info


def provenance(script: str) -> dict:
    """The date, the exact command, the machine and the library versions, saved with every result."""
    from reasondistill.report.grid import versions
    return {"date": time.strftime("%Y-%m-%d"), "command": shlex.join(["python", f"bench/{script}", *sys.argv[1:]]),
            "machine": machine(), "versions": versions()}


def save_result(out: Path, result: dict) -> None:
    """Write a result JSON (atomically, its folder made) and print its table: every script's last step."""
    import _table
    from reasondistill.io import atomic_write_json
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, result)
    print(_table.render(result))


def run_main(main: Callable[[], int | None], script: str) -> None:
    """Exit with ``main``'s status; a ``UserError`` (a bad option, a missing file) is one line, exit 2."""
    from reasondistill.errors import UserError
    try:
        sys.exit(main() or 0)
    except UserError as e:
        print(f"{Path(script).name}: error: {e}", file=sys.stderr)
        sys.exit(2)
