"""The method's extra trained modules (PST's projection, adaptive's perception, bridges) in one
safetensors file beside the student."""

from __future__ import annotations

from pathlib import Path

MODULES_FILE = "method_modules.safetensors"


def save_method_modules(method, out_dir: Path) -> None:
    """Write ``method.modules()`` (if any) atomically into ``out_dir``."""
    mods = method.modules()
    if not mods:
        return
    from safetensors.torch import save_file
    state = {f"{name}.{k}": v.detach().cpu().contiguous() for name, m in mods.items() for k, v in m.state_dict().items()}
    out_dir = Path(out_dir)
    tmp = out_dir / f".{MODULES_FILE}.tmp"
    save_file(state, str(tmp))
    tmp.replace(out_dir / MODULES_FILE)


def load_method_modules(method, out_dir: Path) -> None:
    """Load weights written by ``save_method_modules`` into the modules the method has rebuilt."""
    from safetensors.torch import load_file
    state = load_file(str(Path(out_dir) / MODULES_FILE))
    for name, module in method.modules().items():
        prefix = name + "."
        module.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
