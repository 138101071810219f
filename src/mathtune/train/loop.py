"""The training loop every fine-tuning trainer shares (classifiers and causal-LM SFT): epochs of length-grouped
batches, gradient accumulation, bf16 autocast, atomic resumable checkpoints, validation each epoch, early
stopping and the best epoch's weights restored.

A trainer supplies two functions: ``batch_loss(model, rows) -> loss`` for a batch of training rows, and
``validate() -> metrics`` (which must include the primary metric). The same loop runs in one process or under
``accelerate launch`` (DDP, FSDP): see :mod:`mathtune.train.distributed`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import resource
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ..config import TrainConfig
from ..errors import ModelError
from ..models.device import (  # noqa: F401 (re-exported)
    autocast_context,
    bf16_supported,
    pick_device,
    training_device,
    uses_bf16,
)
from .distributed import current, trainable_state  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

CHECKPOINT = "last.pt"
STATE_DIR = "last_state"  # distributed runs: accelerate's save_state folder
BEST = "best.pt"


class Reporter(Protocol):
    """What the loop tells its caller (the CLI draws progress bars from it)."""

    def start(self, stage: str, total: int | None) -> None: ...
    def advance(self, n: int = 1, **info: float) -> None: ...
    def epoch_end(self, epoch: int, metrics: dict) -> None: ...


class NullReporter:
    def start(self, stage: str, total: int | None) -> None:
        pass

    def advance(self, n: int = 1, **info: float) -> None:
        pass

    def epoch_end(self, epoch: int, metrics: dict) -> None:
        pass


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_metric: float = float("-inf")
    train_seconds: float = 0.0
    samples_trained: int = 0
    samples_per_second: float = 0.0
    resumed_from_step: int = 0
    stopped_early: bool = False
    final_loss: float | None = None


# ----------------------------------------------------------------------------- setup helpers


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def store_frozen_in_bf16(model) -> list[torch.nn.Parameter]:
    """LoRA trains a small set of fp32 parameters on top of a frozen base. With bf16 autocast the base's matmuls
    run in bf16 anyway; storing the frozen base in bf16 (the usual "bf16 base + fp32 adapters" setup) also
    makes its activations bf16 and removes the per-step weight casts: 1.5x faster for SmolLM2 on this CPU.
    Adapters, the classification head and the optimizer stay fp32."""
    frozen = [p for p in model.parameters() if not p.requires_grad and p.dtype == torch.float32]
    for param in frozen:
        param.data = param.data.to(torch.bfloat16)
    return frozen


def prepare_model(model, cfg: TrainConfig, dist) -> tuple[torch.device, Callable, list[torch.nn.Parameter]]:
    """Move the model to its device; the autocast to train under; for LoRA on a bf16 CPU, the frozen base stored
    in bf16 (returned, to cast back to fp32 after training so that adapters merge in full precision)."""
    device = dist.device if dist.world > 1 else training_device(model)
    if device.type == "cpu" or not getattr(model, "hf_device_map", None):
        model.to(device)
    params = list(model.parameters())
    trained_in_fp32(params)
    lora = any(p.requires_grad for p in params) and any(not p.requires_grad for p in params)
    cast_back = store_frozen_in_bf16(model) if lora and uses_bf16(cfg.precision, device) and device.type == "cpu" else []
    return device, autocast_context(cfg.precision, device), cast_back


def trained_in_fp32(params: list[torch.nn.Parameter]) -> int:
    """The parameters that train, in fp32: a checkpoint stored in bf16 (most recent LLMs) loads in bf16, and
    AdamW's updates to bf16 weights are rounded away once they fall below 1/256 of the weight, so a fully
    fine-tuned model would stop learning; autocast still runs the matmuls in bf16 (the usual mixed precision:
    fp32 master weights, bf16 compute). Frozen weights keep their type. Returns how many were cast."""
    cast = [p for p in params if p.requires_grad and p.dtype in (torch.bfloat16, torch.float16)]
    for param in cast:
        param.data = param.data.to(torch.float32)
    if cast:
        log.info("%d trainable tensors stored in 16 bits are trained in fp32", len(cast))
    return len(cast)


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc's malloc keeps them otherwise, so the
    resident size after a large model is freed stays as high as before)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to trim


def peak_rss_mb() -> float:
    """Peak resident memory of this process. VmHWM belongs to the address space, so it restarts at exec;
    ru_maxrss survives execve and would report a parent's peak for a freshly started subprocess."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def batch_order(lengths: Sequence[int], batch_size: int, seed: int, group_by_length: bool) -> list[np.ndarray]:
    """Shuffled batches; with grouping, rows of similar length share a batch (less padding, same randomness
    across batches), as in HF's LengthGroupedSampler: sort inside mega-batches of 50 batches, shuffle batches."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    if not group_by_length:
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    lengths = np.asarray(lengths)
    mega = batch_size * 50
    batches = []
    for start in range(0, len(order), mega):
        chunk = order[start:start + mega]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


# ----------------------------------------------------------------------------- checkpoints


def atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_checkpoint(path: Path, model, optimizer, scheduler, progress: dict) -> None:
    """Plain data only (tensors, dicts, lists, numbers, strings), so loading needs no unpickling of objects:
    ``load_checkpoint`` reads it with ``weights_only=True``. Progress is a JSON string."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    atomic_save({
        "format": 2,
        "model": trainable_state(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": _plain(scheduler.state_dict()),
        "progress": json.dumps(progress),
        "rng": {"torch": torch.get_rng_state(),
                "numpy": [str(np_state[0]), torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
                "python": json.dumps([py_state[0], list(py_state[1]), py_state[2]])},
    }, path)


def _plain(value):
    """A scheduler's state dict without the odd non-plain value (callables are not restorable anyway)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    return None


def read_checkpoint(path: Path) -> dict:
    """The checkpoint's data, read with ``weights_only=True``: a file that asks to build any object (a crafted
    pickle, or a checkpoint from an older mathtune) is refused with a message, and nothing in it runs."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for objects; RuntimeError/EOFError/zip errors for damaged files
        raise ModelError(f"{path}: refused to resume from this checkpoint ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:200] if str(exc) else 'unreadable'}); it is damaged, from an older "
                         f"mathtune, or not ours. Delete {path.parent} to start the training over") from None
    if not isinstance(state, dict) or state.get("format") != 2:
        raise ModelError(f"{path}: not a mathtune checkpoint (format 2); delete {path.parent} to start the training over")
    return state


def load_checkpoint(path: Path, model, optimizer, scheduler) -> dict:
    state = read_checkpoint(path)
    model.load_state_dict(state["model"], strict=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    kind, keys, *rest = state["rng"]["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), int(rest[0]), int(rest[1]), float(rest[2])))
    version, internal, gauss = json.loads(state["rng"]["python"])
    random.setstate((version, tuple(internal), gauss))
    return json.loads(state["progress"])


class Checkpointer:
    """One process: a single atomic ``last.pt``. Distributed: accelerate's ``save_state`` (sharded optimizer
    states under FSDP) into a temporary folder that the main process renames once every rank has written."""

    def __init__(self, directory: Path, dist, model, optimizer, scheduler):
        self.dir, self.dist = directory, dist
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.last = directory / (CHECKPOINT if dist.world == 1 else STATE_DIR)

    def exists(self) -> bool:
        return self.last.exists()

    def save(self, progress: dict) -> None:
        if self.dist.world == 1:
            save_checkpoint(self.last, self.model, self.optimizer, self.scheduler, progress)
            return
        tmp = self.dir / (STATE_DIR + ".tmp")
        if self.dist.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        self.dist.barrier()
        self.dist.accelerator.save_state(str(tmp))
        self.dist.barrier()
        if self.dist.is_main:
            (tmp / "progress.json").write_text(json.dumps(progress), encoding="utf-8")
            shutil.rmtree(self.last, ignore_errors=True)
            os.replace(tmp, self.last)
        self.dist.barrier()

    def load(self) -> dict:
        if self.dist.world == 1:
            return load_checkpoint(self.last, self.model, self.optimizer, self.scheduler)
        self.dist.accelerator.load_state(str(self.last))
        return json.loads((self.last / "progress.json").read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- the loop


def train_loop(
    model,
    lengths: Sequence[int],
    batch_loss: Callable[[np.ndarray], torch.Tensor],
    validate: Callable[[object], dict],
    cfg: TrainConfig,
    primary_metric: str,
    checkpoint_dir: Path,
    greater_is_better: bool = True,
    reporter: Reporter | None = None,
    dist=None,
) -> FitResult:
    """Train ``model`` on rows described by their token ``lengths``.

    ``batch_loss(model, rows)`` runs the (wrapped) model on training rows and returns the mean loss; ``validate(model)``
    returns the epoch's validation metrics. Resumes from the last checkpoint in ``checkpoint_dir`` when one exists.
    """
    run = _Run(model, lengths, cfg, checkpoint_dir, reporter or NullReporter(), dist or current())
    stop = False
    while run.progress["epoch"] < cfg.epochs and not stop:
        stop = run.train_epoch(batch_loss)
        stop = run.end_epoch(validate(run.wrapped), primary_metric, greater_is_better) or stop
    return run.finish()


class _Run:
    """The state of one training run: optimizer, schedule, checkpoints and progress (what a checkpoint saves)."""

    def __init__(self, model, lengths: Sequence[int], cfg: TrainConfig, checkpoint_dir: Path, reporter, dist) -> None:
        from transformers import get_linear_schedule_with_warmup

        self.lengths, self.cfg, self.reporter, self.dist = lengths, cfg, reporter, dist
        torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // dist.world))
        set_seed(cfg.seed)
        batches_per_epoch = -(-len(lengths) // (cfg.batch_size * dist.world))
        total_steps = -(-batches_per_epoch // cfg.grad_accum_steps) * cfg.epochs
        if cfg.max_steps:
            total_steps = min(total_steps, cfg.max_steps)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        self.wrapped, self.optimizer = dist.prepare(model, optimizer)
        self.params = [p for p in self.wrapped.parameters() if p.requires_grad]
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
        dist.register(self.scheduler)
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.best_path = checkpoint_dir / BEST
        self.checkpointer = Checkpointer(checkpoint_dir, dist, self.wrapped, self.optimizer, self.scheduler)
        self.progress = {"epoch": 0, "batches_done": 0, "global_step": 0, "history": [], "best_metric": None,
                         "best_epoch": 0, "bad_epochs": 0, "loss_sum": 0.0, "loss_count": 0, "samples": 0, "seconds": 0.0}
        self.result = FitResult()
        if self.checkpointer.exists():
            self.progress = self.checkpointer.load()
            self.result.resumed_from_step = self.progress["global_step"]
            log.info("resumed from %s at step %d", self.checkpointer.last, self.progress["global_step"])

    def train_epoch(self, batch_loss) -> bool:
        """The rest of the current epoch's batches; True when max_steps was reached."""
        cfg, dist, progress, reporter = self.cfg, self.dist, self.progress, self.reporter
        epoch = progress["epoch"]
        batches = dist.shard(batch_order(self.lengths, cfg.batch_size, cfg.seed + epoch, cfg.group_by_length))
        reporter.start(f"epoch {epoch + 1}/{cfg.epochs}", len(batches))
        if progress["batches_done"]:
            reporter.advance(progress["batches_done"])
        self.wrapped.train()
        tick, stop = time.perf_counter(), False
        for b in range(progress["batches_done"], len(batches)):
            rows = batches[b]
            boundary = (b + 1) % cfg.grad_accum_steps == 0 or b + 1 == len(batches)
            with contextlib.nullcontext() if boundary else dist.no_sync(self.wrapped):
                loss = batch_loss(self.wrapped, rows)
                dist.backward(loss / cfg.grad_accum_steps)
            progress["loss_sum"] += loss.item() * len(rows)
            progress["loss_count"] += len(rows)
            progress["samples"] += len(rows) * dist.world
            progress["batches_done"] = b + 1
            if boundary:
                tick, stop = self._step(tick)
            reporter.advance(1, loss=loss.item())
            if stop:
                break
        progress["seconds"] += time.perf_counter() - tick
        return stop

    def _step(self, tick: float) -> tuple[float, bool]:
        """One optimizer step; a checkpoint every checkpoint_every_steps."""
        cfg, progress = self.cfg, self.progress
        self.dist.clip(self.wrapped, self.params, cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        progress["global_step"] += 1
        if progress["global_step"] % cfg.checkpoint_every_steps == 0:
            progress["seconds"] += time.perf_counter() - tick
            tick = time.perf_counter()
            self.checkpointer.save(progress)
        return tick, bool(cfg.max_steps and progress["global_step"] >= cfg.max_steps)

    def end_epoch(self, metrics: dict, primary_metric: str, greater_is_better: bool) -> bool:
        """Record the validation, keep the best epoch's weights; True when early stopping ends the run."""
        cfg, dist, progress = self.cfg, self.dist, self.progress
        epoch, stop = progress["epoch"], False
        entry = {"epoch": epoch + 1, "step": progress["global_step"],
                 "train_loss": dist.mean(progress["loss_sum"], progress["loss_count"]),
                 **{k: v for k, v in metrics.items() if isinstance(v, float)}}
        progress["history"].append(entry)
        progress["loss_sum"], progress["loss_count"] = 0.0, 0
        value, best = metrics[primary_metric], progress["best_metric"]
        if best is None or (value > best if greater_is_better else value < best):
            progress["best_metric"], progress["best_epoch"], progress["bad_epochs"] = value, epoch + 1, 0
            state = dist.trainable_state(self.wrapped)
            if dist.is_main:
                atomic_save(state, self.best_path)
        else:
            progress["bad_epochs"] += 1
            if cfg.early_stopping_patience and progress["bad_epochs"] >= cfg.early_stopping_patience:
                self.result.stopped_early = stop = True
        progress["epoch"], progress["batches_done"] = epoch + 1, 0
        self.checkpointer.save(progress)
        self.reporter.epoch_end(epoch + 1, entry)
        return stop

    def finish(self) -> FitResult:
        """The best epoch's weights back in the model, and the run's figures."""
        self.dist.barrier()
        if self.best_path.exists():
            self.dist.load_trainable(self.wrapped, torch.load(self.best_path, map_location="cpu", weights_only=True))
        result, progress = self.result, self.progress
        result.history = progress["history"]
        result.best_epoch = progress["best_epoch"]
        result.best_metric = progress["best_metric"]
        result.train_seconds = progress["seconds"]
        result.samples_trained = progress["samples"]
        result.samples_per_second = progress["samples"] / max(progress["seconds"], 1e-9)
        result.final_loss = result.history[-1]["train_loss"] if result.history else None
        return result
