"""One process, or many under ``accelerate launch`` (DDP or FSDP): the few places where the loop differs.

``accelerate launch --config_file deploy/accelerate/ddp.yaml -m mathtune train RECIPE --output DIR`` starts one
process per device; each trains on every ``world``-th batch of the same shuffled order, gradients are averaged
by DDP (or reduced and sharded by FSDP), validation rows are split across processes and their top-k results
gathered, and only the main process writes the model folder and talks to MLflow.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import torch


def launched_distributed() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def current():
    return Accelerated() if launched_distributed() else Local()


class Local:
    world, rank, is_main = 1, 0, True

    def prepare(self, model, optimizer):
        return model, optimizer

    def register(self, obj) -> None:
        pass

    def shard(self, items: list) -> list:
        return items

    def no_sync(self, model):
        return contextlib.nullcontext()

    def backward(self, loss) -> None:
        loss.backward()

    def clip(self, model, params, max_norm: float) -> None:
        torch.nn.utils.clip_grad_norm_(params, max_norm)

    def unwrap(self, model):
        return model

    def gather(self, items: list) -> list:
        return items

    def mean(self, total: float, count: int) -> float:
        return total / max(count, 1)

    def barrier(self) -> None:
        pass

    def trainable_state(self, model) -> dict:
        return trainable_state(model)

    def load_trainable(self, model, state: dict) -> None:
        model.load_state_dict(state, strict=False)

    def full_state(self, model) -> dict:
        return model.state_dict()


class Accelerated(Local):
    """Backed by ``accelerate.Accelerator``; its launch config chooses DDP or FSDP, mixed precision, devices."""

    def __init__(self):
        from accelerate import Accelerator

        # without CUDA, accelerate only forms a process group (gloo) when told to run on the CPU
        self.accelerator = Accelerator(cpu=not torch.cuda.is_available())
        self.world = self.accelerator.num_processes
        self.rank = self.accelerator.process_index
        self.is_main = self.accelerator.is_main_process
        self.fsdp = self.accelerator.distributed_type.name == "FSDP"

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    def prepare(self, model, optimizer):
        return self.accelerator.prepare(model, optimizer)

    def register(self, obj) -> None:
        self.accelerator.register_for_checkpointing(obj)

    def shard(self, items: list) -> list:
        """Every process gets the same number of items (DDP's collectives must match): the list is padded by
        wrapping around, then each takes every world-th item."""
        if not items:
            return items
        short = -len(items) % self.world
        items = list(items) + list(items[:short])
        return items[self.rank::self.world]

    def no_sync(self, model):
        return self.accelerator.no_sync(model)

    def backward(self, loss) -> None:
        self.accelerator.backward(loss)

    def clip(self, model, params, max_norm: float) -> None:
        self.accelerator.clip_grad_norm_(model.parameters() if self.fsdp else params, max_norm)

    def unwrap(self, model):
        return self.accelerator.unwrap_model(model)

    def gather(self, items: list) -> list:
        from accelerate.utils import gather_object

        return gather_object(items)

    def mean(self, total: float, count: int) -> float:
        both = torch.tensor([total, float(count)], dtype=torch.float64, device=self.device)
        both = self.accelerator.reduce(both, reduction="sum")
        return float(both[0] / max(both[1], 1))

    def barrier(self) -> None:
        self.accelerator.wait_for_everyone()

    def trainable_state(self, model) -> dict:
        """Collective: every process must call it. Under FSDP the full (unsharded) weights are gathered."""
        names = {n for n, p in self.unwrap(model).named_parameters() if p.requires_grad}
        full = self.accelerator.get_state_dict(model)
        return {k: v.detach().cpu().clone() for k, v in full.items() if k in names} if full else {}

    def load_trainable(self, model, state: dict) -> None:
        if self.fsdp:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

            set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True, strict=False,
                                                                         broadcast_from_rank0=False))
        else:
            self.unwrap(model).load_state_dict(state, strict=False)

    def full_state(self, model) -> dict:
        return self.accelerator.get_state_dict(model)


def trainable_state(model) -> dict[str, torch.Tensor]:
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k in names}


def split_rows(n: int, dist) -> np.ndarray:
    """The validation rows this process scores (all of them in one process)."""
    return np.arange(n)[dist.rank::dist.world]
