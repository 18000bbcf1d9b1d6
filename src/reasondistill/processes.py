"""Several training processes as one data-parallel job: which launches start one, and who does what.

``torchrun`` (and ``accelerate launch`` through its torchrun path) start N processes with
``WORLD_SIZE``/``RANK`` set. On a machine without GPUs accelerate treats those processes as N
unrelated single-process runs unless it is told to use the CPU, so every entry point builds the
process state here first, with ``cpu=True`` exactly when several processes run and no accelerator is
present (gloo then connects them). ``accelerate launch --cpu`` never starts more than one process
itself (it starts several CPU processes only through ``mpirun``): the command line then starts the N
processes asked for through torchrun, reading N from the launcher's own arguments; where it cannot
(not Linux, or not that command line), or in the Python API, it refuses with the command that works
rather than silently training on one process.

The data is sharded by the trainer, not by accelerate: the global batches are built once, the same
on every process, and each process takes its slice, so N processes take the same optimisation steps
as one process with the same ``--batch-size``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from .errors import UserError


def world_size() -> int:
    """Processes in this job, from the launcher's environment (1 when not launched)."""
    for key in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
        if os.environ.get(key):
            return int(os.environ[key])
    return 1


def needs_cpu_flag() -> bool:
    """Several processes and no accelerator: accelerate needs ``cpu=True`` to join them over gloo."""
    return world_size() > 1 and not torch.accelerator.is_available()


def _single_cpu_launch() -> bool:
    """Started by accelerate's one-process launcher (``--cpu``) when it was asked for several: that
    launcher sets MASTER_ADDR only for more than one process."""
    return (os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
            and "MASTER_ADDR" in os.environ and world_size() == 1 and "RANK" not in os.environ)


def _launcher_num_processes() -> int | None:
    """``--num_processes`` of the ``accelerate launch`` command that started this process, or None."""
    try:
        argv = Path(f"/proc/{os.getppid()}/cmdline").read_text().split("\0")[:-1]
        at = next(i for i, a in enumerate(argv[:4]) if a == "launch" or a.endswith("accelerate.commands.launch"))
        rest = argv[at + 1:]
        from accelerate.commands.launch import launch_command_parser
        args = launch_command_parser().parse_args(rest)
        if args.num_processes is None and args.config_file:
            from accelerate.commands.config.config_args import load_config_from_file
            return load_config_from_file(args.config_file).num_processes
        return args.num_processes
    except Exception:  # not Linux, not an accelerate command line: the caller refuses instead
        return None


def cpu_relaunch_command(argv: list[str]) -> list[str] | None:
    """The torchrun command that starts the N CPU processes ``accelerate launch --cpu --num_processes N``
    asked for, or None when this process was not started that way."""
    if not _single_cpu_launch():
        return None
    n = _launcher_num_processes()
    if not n or n < 2:
        return None
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n),
            "-m", "reasondistill", *argv]


def check_launch() -> None:
    """Refuse ``accelerate launch --cpu --num_processes N>1``, which started only this one process."""
    if _single_cpu_launch():
        raise UserError("`accelerate launch --cpu` started one process, not the several asked for (accelerate "
                        "starts several CPU processes only through mpirun); use `accelerate launch --multi_gpu "
                        "--num_processes N -m reasondistill ...` or `torchrun --nproc_per_node N -m reasondistill ...`, "
                        "which run on CPUs over gloo when no GPU is present")


def process_state():
    """accelerate's process state, built right the first time (it is a singleton: the first call wins)."""
    from accelerate import PartialState
    check_launch()
    return PartialState(cpu=needs_cpu_flag())


def shard_batches(batches: list[list[int]], rank: int, world: int) -> list[list[int]]:
    """This process's part of each global batch. A batch smaller than ``world`` (the tail of a length
    window) is repeated so that every process has at least one example and all take the same steps."""
    if world == 1:
        return batches
    out = []
    for batch in batches:
        full = batch * -(-world // len(batch)) if len(batch) < world else batch
        out.append(full[rank::world])
    return out


def fsdp_not_applied(distributed_type: str) -> str | None:
    """A one-line note when an accelerate config asked for FSDP but accelerate did not apply it: it
    enables FSDP for GPU-type devices only, so CPU processes (gloo) train as plain data parallel."""
    asked = os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true"
    if asked and distributed_type != "FSDP":
        return (f"reasondistill: note: the accelerate config asks for FSDP, but accelerate applies it on GPUs only; "
                f"training as {distributed_type} (plain data parallel, every process holds the whole model)")
    return None
