"""Sharing preprocessing work between the calling thread and a small pool, robust to a slow second core.

Work comes as steps: ``(compute, commit)`` pairs, where ``compute()`` has no side effects (a Pillow resize of a band)
and ``commit(result)`` stores the result (pastes it, or writes it into the batch). Every thread takes the next step
from one shared counter; the calling thread works too.

Two things about the 2-vCPU VM of benchmarks/README.md shape this. A pool thread woken after an idle spell can start
milliseconds late, so the caller must never wait for the pool to begin. And a vCPU can run at a fraction of its speed
for tens of milliseconds while the host takes it (measured: a helper spent 40-60 ms of its own CPU time on an image
the caller resized in 9 ms), so a step on that vCPU would hold the whole batch back. When no step is left to take,
the caller therefore waits for the helpers' last steps only about as long as one of its own steps took, and then
computes whatever is still uncommitted itself; the first result to arrive is committed, a later one is dropped.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

Step = tuple[Callable[[], Any], Callable[[Any], None]]  # (compute: may run twice, commit: runs once)

_FREE, _COMMITTING, _DONE = 0, 1, 2


def run_shared(steps: Sequence[Step], threads: int) -> None:
    """Run every step on the calling thread and up to ``threads - 1`` threads of :func:`shared_pool`: each commit
    runs exactly once, with the first result of its step's compute. Returns when every step is committed (a helper
    may still be computing a step the caller also computed; its result is then dropped). The first error is raised
    once no commit is running."""
    helpers = min(threads, len(steps)) - 1
    if helpers < 1:
        for compute, commit in steps:
            commit(compute())
        return
    state = [_FREE] * len(steps)
    changed = threading.Condition()
    counter = itertools.count()  # next() on it is atomic under the GIL
    failed: list[BaseException] = []

    def finish(index: int) -> None:
        compute, commit = steps[index]
        result = compute()
        with changed:
            if state[index] != _FREE:  # another thread's result came first
                return
            state[index] = _COMMITTING
        try:
            commit(result)
        finally:
            with changed:
                state[index] = _DONE
                changed.notify_all()

    def attempt(index: int) -> None:
        try:
            finish(index)
        except BaseException as error:  # noqa: BLE001 - raised by the caller below
            failed.append(error)

    def take() -> tuple[int, float]:
        """Steps from the counter until none is left: (how many, seconds spent)."""
        start, taken = time.perf_counter(), 0
        while not failed and (index := next(counter)) < len(steps):
            attempt(index)
            taken += 1
        return taken, time.perf_counter() - start

    pool = shared_pool(threads - 1)
    futures = [pool.submit(take) for _ in range(helpers)]
    taken, seconds = take()
    for future in futures:
        future.cancel()  # a helper that has not started (the pool busy elsewhere) is not needed any more
    with changed:  # the helpers' last steps: give them about one step's time to finish
        changed.wait_for(lambda: failed or _FREE not in state, timeout=seconds / max(taken, 1))
    for index in range(len(steps)):
        if failed:
            break
        if state[index] == _FREE:  # still being computed by a slow helper: compute it here too
            attempt(index)
    with changed:
        changed.wait_for(lambda: _COMMITTING not in state)
    if failed:
        raise failed[0]


_pools: tuple[int, dict[int, ThreadPoolExecutor]] = (os.getpid(), {})  # (process id, pool per thread count)
_pools_lock = threading.Lock()


def _forget_pools_in_child() -> None:
    """After a fork: the parent's pools have no threads here, and its lock may have been held by a thread that
    does not exist here either."""
    global _pools, _pools_lock
    _pools, _pools_lock = (os.getpid(), {}), threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools_in_child)


def shared_pool(threads: int) -> ThreadPoolExecutor:
    """A process-wide pool of ``threads`` threads, made on first use, one per size (a caller with another thread
    count never shuts down a pool in use), and made again after a fork (a forked child has the parent's pool objects
    but none of their threads)."""
    global _pools
    with _pools_lock:
        if _pools[0] != os.getpid():
            _pools = (os.getpid(), {})
        pools = _pools[1]
        if threads not in pools:
            pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="mask2former-preprocess")
        return pools[threads]
