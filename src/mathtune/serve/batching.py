"""Micro-batching: concurrent requests to one model are run as one batch: the requests that queued while the
previous batch ran (so an idle server answers at once), optionally plus those arriving within a short wait.

One request at a time costs one forward pass each; under load, a batch of 32 single-question requests costs
about one pass of 32 rows, which is what lets throughput grow with concurrency on a CPU.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import pandas as pd

from ..tasks.base import candidates_of
from .models import ServedModel


@dataclass
class _Pending:
    frame: pd.DataFrame
    k: int
    future: asyncio.Future


class MicroBatcher:
    def __init__(self, model: ServedModel, max_batch: int = 32, max_wait_ms: float = 5.0) -> None:
        self.model = model
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.queue: asyncio.Queue[_Pending] | None = None
        self.worker: asyncio.Task | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.batches = 0
        self.rows = 0

    async def predict(self, frame: pd.DataFrame, k: int):
        """Top-k ids, probabilities and notes for this request's rows, computed within a shared batch."""
        loop = asyncio.get_running_loop()
        if self.queue is None or self.loop is not loop:  # bound to the running event loop (a new one after a restart)
            self.loop = loop
            self.queue = asyncio.Queue()
            self.worker = loop.create_task(self._run())
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(_Pending(frame, k, future))
        return await future

    async def _collect(self) -> list[_Pending]:
        """The next batch: everything queued while the model was busy (no added latency when idle), plus what
        arrives within max_wait when that is set."""
        assert self.queue is not None  # made by the first submit
        first = await self.queue.get()
        batch, rows = [first], len(first.frame)
        while rows < self.max_batch and not self.queue.empty():
            item = self.queue.get_nowait()
            batch.append(item)
            rows += len(item.frame)
        deadline = time.perf_counter() + self.max_wait
        while rows < self.max_batch and self.max_wait > 0:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                item = await asyncio.wait_for(self.queue.get(), timeout=remaining)
            except asyncio.TimeoutError:
                break
            batch.append(item)
            rows += len(item.frame)
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            try:
                k = max(p.k for p in batch)
                frame = pd.concat([p.frame for p in batch], ignore_index=True)
                idx, prob, _ = await self.model.run(self.model.predict_frame, frame, k)
                results, start = [], 0
                for pending in batch:
                    n = len(pending.frame)
                    results.append((idx[start:start + n, : pending.k], prob[start:start + n, : pending.k],
                                    self._notes(pending.frame)))
                    start += n
            except Exception as exc:  # noqa: BLE001 - each request gets the error, the worker keeps serving
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
                continue
            self.batches += 1
            self.rows += len(frame)
            for pending, result in zip(batch, results):
                if not pending.future.done():
                    pending.future.set_result(result)

    def _notes(self, frame: pd.DataFrame) -> list[str]:
        # notes are about this request's rows only (a batch mixes several clients)
        manifest = self.model.predictor.manifest
        _, notes = candidates_of(self.model.task, frame, manifest.get("structure"), self.model.predictor.labels)
        return notes

