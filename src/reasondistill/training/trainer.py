"""One trainer for every method, on accelerate.

The trainer knows nothing about any recipe: it turns examples into the method's features, batches
them by length, and for every optimiser step fetches all its micro-batches, counts their targets
(across processes), and minimises what ``objective.TrainingModule`` makes of the method's targets and
forward, token-level KD included. Mixed precision and multi-GPU come from ``accelerate``
(``accelerate launch -m reasondistill train ...``); gradient accumulation is done here, so each
micro-batch is weighed by its share of the step's targets. Checkpoints hold the full training state
so ``--resume`` continues exactly.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..errors import UserError
from ..io import append_jsonl
from ..loss import liger
from ..methods import Method
from ..processes import fsdp_not_applied, needs_cpu_flag, shard_batches
from ..tasks import Example
from . import checkpoint, packing
from .config import TrainConfig
from .cpu_memory import fix_mmap_threshold
from .data import build_features, check_examples, collate, example_batches
from .objective import TrainingModule, count_targets


def _distiller(method: Method, config: TrainConfig, tokenizer):
    kd = config.kd()
    if not kd.enabled:
        return None
    if method.token_layout is None:
        raise UserError(f"method '{method.name}' does not support token-level KD (teacher_model/teacher_logits): "
                        "its student does not read the batch's tokens")
    from ..kd import Distiller
    return Distiller(kd, tokenizer)


def train(method: Method, model, tokenizer, examples: list[Example], out_dir: str | Path,
          config: TrainConfig, *, resume: bool = False, tiny: bool = False, progress: bool = True) -> dict:
    """Train ``model`` with ``method`` on ``examples``; checkpoints and metrics go to ``out_dir``.
    Runs the method's whole lifecycle (``prepare``, the loop with ``on_step``, ``finish``).

    Returns a summary (steps, seconds, final loss, tokens per second, sequences cut/dropped by
    ``max_length``, ``packing``: how many sequences went into how many rows, ``loss_path``: liger or
    chunked). The caller saves the final model (see ``api.train``)."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, set_seed
    from transformers import get_cosine_schedule_with_warmup

    out_dir = Path(out_dir)
    mixed = config.mixed_precision
    if mixed == "auto":
        mixed = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    # Gradient accumulation is ours (see objective.py). split_batches: every process takes a slice of
    # the same global batch (see shard_batches), so the scheduler steps once per optimiser step.
    accelerator = Accelerator(mixed_precision=mixed, cpu=needs_cpu_flag(),
                              dataloader_config=DataLoaderConfiguration(split_batches=True))
    set_seed(config.seed)
    liger.check_setting(config.use_liger_kernel, accelerator.device)
    if accelerator.device.type == "cpu":
        fix_mmap_threshold()  # vocabulary-sized chunks go back to the system when freed (cpu_memory.py)
    if (note := fsdp_not_applied(accelerator.distributed_type.value)) and accelerator.is_main_process:
        print(note, flush=True)
    check_examples(method, examples)
    distiller = _distiller(method, config, tokenizer)
    if config.packing:
        packing.check_method(method, kd=distiller is not None)
        packing.check_model(model)
    method.prepare(examples, tokenizer, model)
    truncation: dict[str, int] = {}
    groups: list[int] = []
    features = build_features(method, examples, tokenizer, config.max_length, truncation, groups)
    packed = None
    if config.packing:  # rows of several sequences each; they batch like sequences of their own
        packed = {"sequences": len(features)}
        features = packing.pack(features, config.max_length)
        groups = list(range(len(features)))
        packed["rows"] = len(features)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()  # frozen embeddings (LoRA): checkpointed blocks still get grads

    steps_per_epoch = max(1, math.ceil(len(features) / config.batch_size / config.grad_accum))
    epochs = math.ceil(config.max_steps / steps_per_epoch)
    lengths = [len(f.input_ids) for f in features]

    if not method.batch_examples_together:
        groups = list(range(len(features)))

    def batches_for(epoch: int) -> list[list[int]]:
        return example_batches(groups, lengths, config.batch_size, config.seed + epoch, config.group_by_length)

    # One DataLoader over all epochs' batches, so resuming is "skip the first N batches". The global
    # batches are the same on every process; each takes its slice (processes.py says why not
    # accelerate). Its own generator: starting to iterate must not draw from the global one.
    all_batches = [b for e in range(epochs) for b in batches_for(e)]
    mine = shard_batches(all_batches, accelerator.process_index, accelerator.num_processes)
    loader = DataLoader(features, batch_sampler=mine, collate_fn=lambda fs: collate(fs, pad_id),
                        generator=torch.Generator().manual_seed(config.seed))

    module = TrainingModule(model, method, distiller, config.loss_chunk_tokens, config.use_liger_kernel)
    lr = config.lr if config.lr is not None else (1e-3 if tiny else 5e-5)
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in name else decay).append(p)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    scheduler = get_cosine_schedule_with_warmup(
        optimizer, int(config.warmup_ratio * config.max_steps), config.max_steps)
    module, optimizer, scheduler = accelerator.prepare(module, optimizer, scheduler)

    ckpt_root = out_dir / "checkpoints"
    metrics_path = out_dir / "metrics.jsonl"
    step = 0
    if resume:
        step, schedules = checkpoint.load_latest_checkpoint(accelerator, ckpt_root)
        method.load_state_dict(schedules.get("method", {}))
        if distiller is not None:
            distiller.load_state_dict(schedules.get("kd", {}))
        if step and accelerator.is_main_process and metrics_path.exists():
            kept = [line for line in metrics_path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= step]
            metrics_path.write_text("".join(line + "\n" for line in kept))
    elif accelerator.is_main_process and metrics_path.exists():
        metrics_path.unlink()
    summary = {"n_features": len(features), "truncated": truncation, "lr": lr, "mixed_precision": mixed,
               "num_processes": accelerator.num_processes, "packing": packed}
    if step >= config.max_steps:
        return {"steps": step, "resumed_from": step, **summary}

    resumed_from = step
    micro_index = step * config.grad_accum
    data = iter(accelerator.skip_first_batches(loader, micro_index) if micro_index else loader)
    bar = tqdm(total=config.max_steps, initial=step, desc=f"train {method.name}",
               disable=not (progress and accelerator.is_local_main_process), dynamic_ncols=True)
    module.train()
    started, tokens, last = time.perf_counter(), 0, {}
    running: dict[str, float] = {}
    per_step: dict[str, list[float]] = {}
    micro_logged = 0
    scale = float(accelerator.num_processes)
    while step < config.max_steps:
        micro = [b for b in (next(data, None) for _ in range(config.grad_accum)) if b is not None]
        if not micro:
            break
        micro = [{k: v.to(accelerator.device) for k, v in b.items()} for b in micro]
        for i, batch in enumerate(micro):  # the masking draws of Masked Thought, fixed per micro-batch
            batch["seed"] = (config.seed * 1_000_003 + micro_index + i) * 64 + accelerator.process_index
        micro_index += len(micro)
        totals = count_targets(method, micro)
        keys = sorted(totals)
        summed = accelerator.reduce(torch.stack([totals[k].float() for k in keys]).to(accelerator.device), "sum")
        totals = dict(zip(keys, summed))
        step_loss, step_kd = 0.0, 0.0
        for i, batch in enumerate(micro):
            sync = i == len(micro) - 1
            with contextlib.nullcontext() if sync else accelerator.no_sync(module):
                losses = module(batch, totals, scale)
                accelerator.backward(losses["loss"])
            tokens += int(batch["attention_mask"].sum())
            step_loss += float(losses.pop("step_loss"))
            losses.pop("loss")
            step_kd += float(losses.pop("kd", 0.0))
            for k, v in losses.items():
                running[k] = running.get(k, 0.0) + float(v)
            micro_logged += 1
        accelerator.clip_grad_norm_(module.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        step += 1
        per_step.setdefault("loss", []).append(step_loss)  # the step's loss: its micro-batches' shares add up
        if distiller is not None:
            per_step.setdefault("kd", []).append(step_kd)
            distiller.end_step(step_kd, step, config.max_steps)
            if distiller.t is not None:
                per_step.setdefault("taid_t", []).append(distiller.t)
        method.on_step(step, config.max_steps)
        bar.update(1)
        if step % config.log_every == 0 or step == config.max_steps:
            last = {k: v / micro_logged for k, v in running.items()}
            last = _mean_over_processes(accelerator, last)
            # A step's loss and KD are sums of every process's shares: summed, not averaged.
            last.update(_sum_over_processes(accelerator, {k: sum(v) / len(v) for k, v in per_step.items()
                                                          if k != "taid_t"}))
            if "taid_t" in per_step:
                last["taid_t"] = sum(per_step["taid_t"]) / len(per_step["taid_t"])
            elapsed = time.perf_counter() - started
            row = {"step": step, **{k: round(v, 5) for k, v in last.items()},
                   "lr": scheduler.get_last_lr()[0],
                   "tokens_per_s": round(_sum_over_processes(accelerator, {"t": tokens})["t"] / elapsed, 1)}
            if accelerator.is_main_process:
                append_jsonl(metrics_path, row)
            bar.set_postfix(loss=f"{last['loss']:.3f}")
            running, micro_logged, per_step = {}, 0, {}
        if config.checkpoint_every and step % config.checkpoint_every == 0 and step < config.max_steps:
            schedules = {"method": method.state_dict(), "kd": distiller.state_dict() if distiller else {}}
            checkpoint.save_checkpoint(accelerator, ckpt_root, step, schedules)
    bar.close()
    elapsed = time.perf_counter() - started
    accelerator.wait_for_everyone()
    tokens = int(_sum_over_processes(accelerator, {"t": tokens})["t"])
    method.finish(model, tokenizer, examples)
    return {"steps": step, "resumed_from": resumed_from, "seconds": round(elapsed, 2),
            "final_loss": last.get("loss"), "tokens_per_s": round(tokens / max(elapsed, 1e-9), 1),
            "tokens": tokens, "distributed_type": str(accelerator.distributed_type.value),
            "loss_path": accelerator.unwrap_model(module).loss_path, **summary}


def _sum_over_processes(accelerator, values: dict[str, float]) -> dict[str, float]:
    if accelerator.num_processes == 1 or not values:
        return values
    keys = sorted(values)  # the same on every process
    total = accelerator.reduce(torch.tensor([float(values[k]) for k in keys], device=accelerator.device), "sum")
    return dict(zip(keys, total.tolist()))


def _mean_over_processes(accelerator, values: dict[str, float]) -> dict[str, float]:
    """Logged per-micro-batch values averaged over the processes, so the curve is the job's."""
    if accelerator.num_processes == 1:
        return values
    from accelerate.utils import gather_object
    keys = sorted(set().union(*gather_object([sorted(values)])))  # a span may be missing on one process
    own = torch.tensor([[float(values.get(k, 0.0)), float(k in values)] for k in keys], device=accelerator.device)
    total = accelerator.reduce(own, "sum")
    return {k: s / n for k, (s, n) in zip(keys, total.tolist()) if n > 0}
