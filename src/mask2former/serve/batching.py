"""Dynamic batching: requests that arrive together share one call of the model, each gets its own answer back.

A :class:`Batcher` owns a queue and one worker task. The worker takes the first waiting job, then keeps taking jobs
until it has ``max_batch`` of them or ``max_wait_s`` has passed since the first, splits what it took by key (jobs
with different keys cannot share a call) and runs each group in one thread reserved for the model, in arrival order.
While the model runs, new jobs queue up and form the next batch. Pure asyncio: nothing here knows about HTTP.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any


class QueueFull(RuntimeError):
    """More jobs are waiting than the batcher accepts (``max_queue``)."""


@dataclass
class _Job:
    key: Hashable
    item: Any
    future: asyncio.Future[tuple[Any, int]]


@dataclass
class BatchStats:
    """What the batcher has done: jobs answered, calls made, and how many calls had each batch size."""

    jobs: int = 0
    batches: int = 0
    failed_batches: int = 0
    batch_sizes: Counter[int] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {"jobs": self.jobs, "batches": self.batches, "failed_batches": self.failed_batches,
                "batch_sizes": {str(size): count for size, count in sorted(self.batch_sizes.items())}}


class Batcher:
    """Collects jobs into batches for ``run(key, items) -> results`` (one result per item, in order).

    ``run`` is called in one dedicated thread, never twice at a time, so it may use a model that is not thread-safe.
    An exception from ``run`` fails the jobs of that call only.
    """

    def __init__(self, run: Callable[[Hashable, list[Any]], Sequence[Any]], *, max_batch: int = 8,
                 max_wait_s: float = 0.01, max_queue: int = 64) -> None:
        if max_batch < 1 or max_wait_s < 0 or max_queue < 1:
            raise ValueError("max_batch and max_queue must be at least 1 and max_wait_s at least 0.")
        self.run = run
        self.max_batch, self.max_wait_s, self.max_queue = max_batch, max_wait_s, max_queue
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Job] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")

    @property
    def waiting(self) -> int:
        return 0 if self._queue is None else self._queue.qsize()

    def start(self) -> None:
        """Start the worker on the running event loop."""
        self._queue = asyncio.Queue()
        self._worker = asyncio.get_running_loop().create_task(self._work(), name="batcher")

    async def stop(self) -> None:
        """Stop the worker; jobs still waiting fail with ``RuntimeError``."""
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        while self._queue is not None and not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(RuntimeError("the server is shutting down"))
        self._thread.shutdown(wait=True)

    async def submit(self, key: Hashable, item: Any) -> tuple[Any, int]:
        """Queue ``item`` and wait for its result; returns ``(result, size of the batch it ran in)``.

        Raises :class:`QueueFull` when ``max_queue`` jobs are already waiting, or what ``run`` raised.
        """
        if self._queue is None:
            raise RuntimeError("Batcher.start() has not been called.")
        if self._queue.qsize() >= self.max_queue:
            raise QueueFull(f"{self._queue.qsize()} requests are already waiting (--max-queue {self.max_queue}).")
        future: asyncio.Future[tuple[Any, int]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(key, item, future))
        return await future

    async def _collect(self, jobs: list[_Job]) -> None:
        """Append the first waiting job and those that arrive within ``max_wait_s`` of it, at most ``max_batch``."""
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        jobs.append(await self._queue.get())
        deadline = loop.time() + self.max_wait_s
        while len(jobs) < self.max_batch:
            if not self._queue.empty():
                jobs.append(self._queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                jobs.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break

    async def _work(self) -> None:
        while True:
            jobs: list[_Job] = []
            try:
                await self._collect(jobs)
                await self._run_groups([job for job in jobs if not job.future.done()])  # gone clients: cancelled
            except asyncio.CancelledError:
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(RuntimeError("the server is shutting down"))
                raise

    async def _run_groups(self, jobs: list[_Job]) -> None:
        """Run the jobs in one call per key (in order of each key's first job) and hand out the results."""
        loop = asyncio.get_running_loop()
        groups: dict[Hashable, list[_Job]] = {}
        for job in jobs:
            groups.setdefault(job.key, []).append(job)
        for key, group in groups.items():
            try:
                results = await loop.run_in_executor(self._thread, self.run, key, [job.item for job in group])
                if len(results) != len(group):
                    raise RuntimeError(f"the model returned {len(results)} results for {len(group)} inputs")
            except Exception as error:  # the callers report it; the worker goes on
                self.stats.failed_batches += 1
                for job in group:
                    if not job.future.done():
                        job.future.set_exception(error)
                continue
            self.stats.batches += 1
            self.stats.jobs += len(group)
            self.stats.batch_sizes[len(group)] += 1
            for job, result in zip(group, results):
                if not job.future.done():
                    job.future.set_result((result, len(group)))
