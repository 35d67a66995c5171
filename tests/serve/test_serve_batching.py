"""The batcher alone (no HTTP, no model): batches up to max_batch, groups by key, one answer per job, failures of one
call stay in that call, a full queue is refused, a stopped batcher fails what waits."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from mask2former.serve.batching import Batcher, QueueFull


class Recorder:
    """``run`` for the batcher: records each call (key, items, thread), answers ``(key, item * 10)`` per item."""

    def __init__(self, delay: float = 0.0, fail_on: object = None) -> None:
        self.calls: list[tuple[object, list[int]]] = []
        self.threads: set[str] = set()
        self.delay, self.fail_on = delay, fail_on

    def __call__(self, key, items):
        self.calls.append((key, list(items)))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        if key == self.fail_on:
            raise RuntimeError(f"boom on {key}")
        return [(key, item * 10) for item in items]


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, timeout=30))


def test_jobs_that_arrive_together_share_calls_of_at_most_max_batch():
    recorder = Recorder(delay=0.05)

    async def main():
        batcher = Batcher(recorder, max_batch=4, max_wait_s=0.05)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit("k", i) for i in range(10)))
        await batcher.stop()
        return batcher, results

    batcher, results = run(main())
    assert [result for result, _ in results] == [("k", 10 * i) for i in range(10)]
    sizes = [len(items) for _, items in recorder.calls]
    assert sizes == [4, 4, 2] and [size for _, size in results] == [4] * 8 + [2] * 2
    assert sorted(item for _, items in recorder.calls for item in items) == list(range(10))
    assert batcher.stats.as_dict() == {"jobs": 10, "batches": 3, "failed_batches": 0,
                                       "batch_sizes": {"2": 1, "4": 2}}
    assert len(recorder.threads) == 1  # one model thread


def test_keys_never_share_a_call_and_failures_stay_in_their_call():
    recorder = Recorder(fail_on="bad")

    async def main():
        batcher = Batcher(recorder, max_batch=8, max_wait_s=0.05)
        batcher.start()
        jobs = [batcher.submit(key, i) for i, key in enumerate(["a", "bad", "b", "a", "bad", "b"])]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        after = await batcher.submit("a", 7)  # the worker goes on after a failed call
        await batcher.stop()
        return batcher, results, after

    batcher, results, after = run(main())
    assert sorted(recorder.calls[:3]) == [("a", [0, 3]), ("b", [2, 5]), ("bad", [1, 4])]
    assert results[0] == (("a", 0), 2) and results[3] == (("a", 30), 2) and results[5] == (("b", 50), 2)
    assert isinstance(results[1], RuntimeError) and "boom on bad" in str(results[1])
    assert isinstance(results[4], RuntimeError)
    assert after == (("a", 70), 1)
    assert batcher.stats.failed_batches == 1 and batcher.stats.jobs == 5


def test_a_lone_job_waits_at_most_max_wait():
    async def main():
        batcher = Batcher(Recorder(), max_batch=8, max_wait_s=0.02)
        batcher.start()
        started = time.monotonic()
        result = await batcher.submit("k", 1)
        waited = time.monotonic() - started
        await batcher.stop()
        return result, waited

    result, waited = run(main())
    assert result == (("k", 10), 1) and waited < 5  # not stuck waiting for a batch to fill


def test_full_queue_is_refused_and_stop_fails_waiting_jobs():
    recorder = Recorder(delay=0.3)

    async def main():
        batcher = Batcher(recorder, max_batch=1, max_wait_s=0.0, max_queue=2)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit("k", 0))
        await asyncio.sleep(0.1)  # the worker has taken it; the queue is empty again
        waiting = [asyncio.ensure_future(batcher.submit("k", i)) for i in (1, 2)]
        await asyncio.sleep(0)
        with pytest.raises(QueueFull, match="--max-queue 2"):
            await batcher.submit("k", 3)
        await batcher.stop()
        return await asyncio.gather(first, *waiting, return_exceptions=True)

    results = run(main())
    assert all(isinstance(r, RuntimeError) and "shutting down" in str(r) for r in results)


def test_cancelled_jobs_are_skipped():
    recorder = Recorder(delay=0.2)

    async def main():
        batcher = Batcher(recorder, max_batch=1, max_wait_s=0.0)
        batcher.start()
        busy = asyncio.ensure_future(batcher.submit("k", 0))
        await asyncio.sleep(0.05)
        gone = asyncio.ensure_future(batcher.submit("k", 1))  # a client that goes away while it waits
        await asyncio.sleep(0)
        gone.cancel()
        kept = await batcher.submit("k", 2)
        await busy
        await batcher.stop()
        return kept

    assert run(main()) == (("k", 20), 1)
    assert [items for _, items in recorder.calls] == [[0], [2]]
