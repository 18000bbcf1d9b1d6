"""One trainer for every method, on accelerate.

The trainer knows nothing about any recipe: it turns examples into the method's features, batches
them by length, and minimises whatever ``method.loss`` returns. Gradient accumulation, mixed
precision and multi-GPU come from ``accelerate`` (``accelerate launch -m reasondistill train ...``
works unchanged); checkpoints hold the full training state so ``--resume`` continues exactly.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .commands import TrainConfig  # noqa: F401  (the optimisation options; defined with the others)
from .errors import UserError
from .io import append_jsonl, atomic_write_json
from .methods import Feature, Method
from .processes import fsdp_not_applied, needs_cpu_flag, shard_batches
from .runfolder import MODULES_FILE
from .tasks import Example


class TrainingModule(nn.Module):
    """The student plus the method's extra modules, so DDP sees (and syncs) every trained weight
    and the method's whole loss runs inside one forward."""

    def __init__(self, model: nn.Module, method: Method) -> None:
        super().__init__()
        self.model = model
        self.extras = nn.ModuleDict(method.modules())
        self.method = [method]  # a list: not registered as a submodule

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        method = self.method[0]
        losses = method.loss(self.model, batch)
        extra = method.pop_extra_losses()  # cross-cutting terms from run_model, e.g. token-level KD
        return {**losses, **extra, "loss": losses["loss"] + extra["loss"]} if extra else losses


def collate(features: list[Feature], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a list of features into tensors; scalar extras are stacked."""
    width = max(len(f.input_ids) for f in features)
    batch = {
        "input_ids": torch.full((len(features), width), pad_id, dtype=torch.long),
        "attention_mask": torch.zeros((len(features), width), dtype=torch.long),
        "spans": torch.zeros((len(features), width), dtype=torch.long),
    }
    if any(f.weights is not None for f in features):
        batch["weights"] = torch.zeros((len(features), width))
    for i, f in enumerate(features):
        n = len(f.input_ids)
        batch["input_ids"][i, :n] = torch.tensor(f.input_ids)
        batch["attention_mask"][i, :n] = 1
        batch["spans"][i, :n] = torch.tensor(f.spans)
        if "weights" in batch:
            batch["weights"][i, :n] = torch.tensor(f.weights if f.weights is not None else [1.0] * n)
    for key in features[0].extras:
        values = [f.extras[key] for f in features]
        if isinstance(values[0], (list, tuple)):  # per-token extras: right-padded with 0
            padded = torch.zeros((len(features), width), dtype=torch.tensor(values[0][:1] or [0]).dtype)
            for i, v in enumerate(values):
                padded[i, :len(v)] = torch.tensor(v)
            batch[key] = padded
        else:
            batch[key] = torch.tensor(values)
    return batch


def length_grouped_batches(lengths: list[int], batch_size: int, seed: int) -> list[list[int]]:
    """Shuffle, then sort within windows of 50 batches so each batch pads little, then shuffle the
    batches: most of the padding saving of full sorting, with the randomness of shuffling."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 50
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def check_examples(method: Method, examples: list[Example]) -> None:
    """Fail early, naming the example, when a rationale method gets examples without rationales."""
    if not examples:
        raise UserError("no training examples")
    for ex in examples:
        if method.uses_rationale and not (ex.rationale or "").strip():
            raise UserError(f"method '{method.name}' needs a rationale, but example '{ex.id}' has none "
                            "(collect them with `reasondistill teach`, or use answer_only)", field="rationale")


def build_features(method: Method, examples: list[Example], tokenizer, max_length: int) -> list[Feature]:
    features = []
    for ex in examples:
        for f in method.features(ex, tokenizer):
            if len(f.input_ids) > max_length:  # keep the prompt and answer; cut the end
                f.input_ids, f.spans = f.input_ids[:max_length], f.spans[:max_length]
                f.weights = f.weights[:max_length] if f.weights is not None else None
                f.extras = {k: v[:max_length] if isinstance(v, (list, tuple)) else v for k, v in f.extras.items()}
            features.append(f)
    return features


def train(method: Method, model, tokenizer, examples: list[Example], out_dir: str | Path,
          config: TrainConfig, *, resume: bool = False, tiny: bool = False, progress: bool = True) -> dict:
    """Train ``model`` with ``method`` on ``examples``; checkpoints and metrics go to ``out_dir``.

    Returns a summary (steps, seconds, final loss, tokens per second). The caller saves the final
    model (see ``api.train``) so the trainer stays independent of the run-folder layout.
    """
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, set_seed
    from transformers import get_cosine_schedule_with_warmup

    out_dir = Path(out_dir)
    mixed = config.mixed_precision
    if mixed == "auto":
        mixed = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    # split_batches: every process takes a slice of the same global batch (see shard_batches), so the
    # scheduler steps once per optimiser step, as in a one-process run.
    accelerator = Accelerator(gradient_accumulation_steps=config.grad_accum, mixed_precision=mixed,
                              cpu=needs_cpu_flag(), dataloader_config=DataLoaderConfiguration(split_batches=True))
    set_seed(config.seed)
    if (note := fsdp_not_applied(accelerator.distributed_type.value)) and accelerator.is_main_process:
        print(note, flush=True)
    check_examples(method, examples)
    method.prepare(examples, tokenizer, model)
    method.attach_teacher(tokenizer)  # token-level KD when the options name a teacher
    features = build_features(method, examples, tokenizer, config.max_length)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    steps_per_epoch = max(1, math.ceil(len(features) / config.batch_size / config.grad_accum))
    epochs = math.ceil(config.max_steps / steps_per_epoch)
    lengths = [len(f.input_ids) for f in features]

    def batches_for(epoch: int) -> list[list[int]]:
        if config.group_by_length:
            return length_grouped_batches(lengths, config.batch_size, config.seed + epoch)
        order = list(range(len(features)))
        random.Random(config.seed + epoch).shuffle(order)
        return [order[i:i + config.batch_size] for i in range(0, len(order), config.batch_size)]

    # One DataLoader over all epochs' batches, so resuming is "skip the first N batches". The global
    # batches are the same on every process; each takes its slice (processes.py says why not accelerate).
    all_batches = [b for e in range(epochs) for b in batches_for(e)]
    mine = shard_batches(all_batches, accelerator.process_index, accelerator.num_processes)
    loader = DataLoader(features, batch_sampler=mine, collate_fn=lambda fs: collate(fs, pad_id))

    module = TrainingModule(model, method)
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
        step = _load_latest_checkpoint(accelerator, ckpt_root)
        if step and accelerator.is_main_process and metrics_path.exists():
            kept = [line for line in metrics_path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= step]
            metrics_path.write_text("".join(line + "\n" for line in kept))
    elif accelerator.is_main_process and metrics_path.exists():
        metrics_path.unlink()
    if step >= config.max_steps:
        return {"steps": step, "resumed_from": step}

    resumed_from = step
    batches_to_skip = step * config.grad_accum
    data = accelerator.skip_first_batches(loader, batches_to_skip) if batches_to_skip else loader
    bar = tqdm(total=config.max_steps, initial=step, desc=f"train {method.name}",
               disable=not (progress and accelerator.is_local_main_process), dynamic_ncols=True)
    module.train()
    started, tokens, last = time.perf_counter(), 0, {}
    running: dict[str, float] = {}
    micro = 0
    for batch in data:
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        with accelerator.accumulate(module):
            losses = module(batch)
            accelerator.backward(losses["loss"])
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(module.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        tokens += int(batch["attention_mask"].sum())
        micro += 1
        for k, v in losses.items():
            running[k] = running.get(k, 0.0) + float(v.detach())
        if not accelerator.sync_gradients:
            continue
        step += 1
        method.on_step(step, config.max_steps)
        method.kd_on_step(step, config.max_steps)
        bar.update(1)
        if step % config.log_every == 0 or step == config.max_steps:
            last = _mean_over_processes(accelerator, {k: v / micro for k, v in running.items()})
            elapsed = time.perf_counter() - started
            row = {"step": step, **{k: round(v, 5) for k, v in last.items()},
                   "lr": scheduler.get_last_lr()[0],
                   "tokens_per_s": round(_sum_over_processes(accelerator, tokens) / elapsed, 1)}
            if accelerator.is_main_process:
                append_jsonl(metrics_path, row)
            bar.set_postfix(loss=f"{last['loss']:.3f}")
            running, micro = {}, 0
        if config.checkpoint_every and step % config.checkpoint_every == 0 and step < config.max_steps:
            _save_checkpoint(accelerator, ckpt_root, step)
        if step >= config.max_steps:
            break
    bar.close()
    elapsed = time.perf_counter() - started
    accelerator.wait_for_everyone()
    tokens = _sum_over_processes(accelerator, tokens)
    return {"steps": step, "resumed_from": resumed_from, "seconds": round(elapsed, 2),
            "final_loss": last.get("loss"), "tokens_per_s": round(tokens / max(elapsed, 1e-9), 1),
            "tokens": tokens, "n_features": len(features), "lr": lr, "mixed_precision": mixed,
            "num_processes": accelerator.num_processes, "distributed_type": str(accelerator.distributed_type.value)}


def _sum_over_processes(accelerator, count: int) -> int:
    if accelerator.num_processes == 1:
        return count
    return int(accelerator.reduce(torch.tensor(count, device=accelerator.device), "sum"))


def _mean_over_processes(accelerator, values: dict[str, float]) -> dict[str, float]:
    """Logged losses averaged over the processes, so the curve is the job's, not process 0's."""
    if accelerator.num_processes == 1:
        return values
    keys = list(values)  # the same on every process: the method returns the same loss terms
    mean = accelerator.reduce(torch.tensor([values[k] for k in keys], device=accelerator.device), "mean")
    return dict(zip(keys, mean.tolist()))


def _save_checkpoint(accelerator, root: Path, step: int) -> None:
    """Full training state (weights, optimizer, scheduler, RNG) into checkpoints/step-N, written
    under a temporary name and renamed, then older checkpoints removed."""
    tmp = root / f".step-{step}.tmp"
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        atomic_write_json(tmp / "trainer_state.json", {"step": step})
        final = root / f"step-{step}"
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in root.glob("step-*"):
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def _load_latest_checkpoint(accelerator, root: Path) -> int:
    done = sorted((p for p in root.glob("step-*") if (p / "trainer_state.json").exists()),
                  key=lambda p: int(p.name.split("-")[1]))
    if not done:
        return 0
    accelerator.load_state(str(done[-1]))
    return json.loads((done[-1] / "trainer_state.json").read_text())["step"]


def load_method_modules(method: Method, out_dir: Path) -> None:
    """Load weights written by ``save_method_modules`` into the modules the method has rebuilt."""
    from safetensors.torch import load_file
    state = load_file(str(Path(out_dir) / MODULES_FILE))
    for name, module in method.modules().items():
        prefix = name + "."
        module.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})


def save_method_modules(method: Method, out_dir: Path) -> None:
    """The method's extra trained modules (e.g. PST's projection), beside the student."""
    mods = method.modules()
    if not mods:
        return
    from safetensors.torch import save_file
    state = {f"{name}.{k}": v.detach().cpu().contiguous() for name, m in mods.items() for k, v in m.state_dict().items()}
    tmp = out_dir / f".{MODULES_FILE}.tmp"
    save_file(state, str(tmp))
    tmp.replace(out_dir / MODULES_FILE)
