from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Hashable

import pytest

from serving.batcher import Arrival, Batcher, BatchLimits, QueueFull


class Recorder:
    """A batch function that answers each item with its own transformation and logs each call."""

    def __init__(self, release: threading.Event | None = None) -> None:
        self.calls: list[tuple[Hashable, list[str]]] = []
        self.release = release

    def __call__(self, key: Hashable, items: list[str]) -> list[str]:
        if self.release is not None:
            self.release.wait(5)
        self.calls.append((key, list(items)))
        return [f"{key}:{item.upper()}" for item in items]


def test_concurrent_items_share_fewer_calls_and_keep_their_answers() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder, BatchLimits(max_batch_size=8, max_wait_ms=50))

    async def scenario() -> list[list[tuple[str, object]]]:
        return await asyncio.gather(*(batcher.submit("k", [f"text{i}"]) for i in range(8)))

    results = asyncio.run(scenario())
    batcher.close()
    assert [r[0][0] for r in results] == [f"k:TEXT{i}" for i in range(8)]
    assert len(recorder.calls) == 1 and results[0][0][1].batch_size == 8


def test_batches_never_exceed_the_max_batch_size() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder, BatchLimits(max_batch_size=3, max_wait_ms=50))

    async def scenario() -> None:
        await asyncio.gather(*(batcher.submit("k", [str(i)]) for i in range(7)))

    asyncio.run(scenario())
    batcher.close()
    assert [len(items) for _, items in recorder.calls] == [3, 3, 1]


def test_items_with_different_keys_never_share_a_call() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder, BatchLimits(max_batch_size=8, max_wait_ms=50))

    async def scenario() -> list[list[tuple[str, object]]]:
        return await asyncio.gather(*(batcher.submit(f"k{i % 2}", [str(i)]) for i in range(6)))

    results = asyncio.run(scenario())
    batcher.close()
    assert sorted(key for key, _ in recorder.calls) == ["k0", "k1"]
    assert [r[0][0] for r in results] == [f"k{i % 2}:{i}" for i in range(6)]


def test_a_full_queue_refuses_with_a_retry_delay() -> None:
    release = threading.Event()
    batcher = Batcher(Recorder(release), BatchLimits(max_batch_size=1, max_wait_ms=0, max_queue=2))

    async def scenario() -> None:
        running = asyncio.ensure_future(batcher.submit("k", ["first"]))
        await asyncio.sleep(0.05)  # the first item is in the inference thread now
        waiting = asyncio.ensure_future(batcher.submit("k", ["second", "third"]))
        await asyncio.sleep(0)
        with pytest.raises(QueueFull) as refused:
            await batcher.submit("k", ["fourth"])
        assert refused.value.retry_after_s >= 1
        release.set()
        await asyncio.gather(running, waiting)

    asyncio.run(scenario())
    batcher.close()


def test_a_failing_batch_fails_each_of_its_callers() -> None:
    def broken(key: Hashable, items: list[str]) -> list[str]:
        raise RuntimeError("kernel exploded")

    batcher = Batcher(broken, BatchLimits(max_batch_size=4, max_wait_ms=20))

    async def scenario() -> list[object]:
        calls = (batcher.submit("k", [str(i)]) for i in range(3))
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(scenario())
    batcher.close()
    assert all(isinstance(r, RuntimeError) for r in results)
    assert batcher.depth == 0


def test_a_batch_waits_for_a_request_still_arriving() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder, BatchLimits(max_batch_size=4, max_wait_ms=1, max_hold_ms=2000))

    async def late(arrival: Arrival) -> list[tuple[str, object]]:
        await asyncio.sleep(0.1)  # far beyond max_wait_ms: still being read (auth, tokenizing)
        return await batcher.submit("k", ["late"], arrival)

    async def scenario() -> None:
        arrival = batcher.arriving()
        await asyncio.gather(batcher.submit("k", ["early"]), late(arrival))

    asyncio.run(scenario())
    batcher.close()
    assert recorder.calls == [("k", ["early", "late"])]


def test_two_streams_run_two_batches_at_once_sharing_a_burst() -> None:
    both_running = threading.Barrier(2, timeout=5)  # broken unless the other batch runs meanwhile
    sizes: list[int] = []

    def run(key: Hashable, items: list[str]) -> list[str]:
        both_running.wait()
        sizes.append(len(items))
        return [item.upper() for item in items]

    batcher = Batcher(run, BatchLimits(max_batch_size=8, max_wait_ms=50, streams=2))

    async def scenario() -> list[list[tuple[str, object]]]:
        return await asyncio.gather(*(batcher.submit("k", [f"t{i}"]) for i in range(8)))

    results = asyncio.run(scenario())
    batcher.close()
    assert sorted(sizes) == [4, 4]
    assert [r[0][0] for r in results] == [f"T{i}" for i in range(8)]


def test_with_two_streams_a_batch_starts_at_half_the_max_size_without_waiting() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder, BatchLimits(max_batch_size=8, max_wait_ms=60_000, streams=2))

    async def scenario() -> None:
        submits = asyncio.gather(*(batcher.submit("k", [str(i)]) for i in range(4)))
        await asyncio.wait_for(submits, timeout=10)  # far less than max_wait_ms

    asyncio.run(scenario())
    batcher.close()
    assert [len(items) for _, items in recorder.calls] == [4]


def test_a_lone_item_on_an_idle_batcher_runs_without_waiting_for_company() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder, BatchLimits(max_batch_size=8, max_wait_ms=60_000))

    async def scenario() -> None:
        await asyncio.wait_for(batcher.submit("k", ["alone"]), timeout=10)  # far less than max_wait_ms

    asyncio.run(scenario())
    batcher.close()
    assert recorder.calls == [("k", ["alone"])]


def test_a_lone_client_sending_again_after_its_answer_does_not_wait_for_company() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder, BatchLimits(max_batch_size=8, max_wait_ms=60_000, idle_wait_ms=300))

    async def scenario() -> float:
        await batcher.submit("k", ["first"])  # from a quiet batcher: waits idle_wait_ms for a burst
        started = time.perf_counter()
        await batcher.submit("k", ["again"])
        return time.perf_counter() - started

    again = asyncio.run(scenario())
    batcher.close()
    assert again < 0.15 and recorder.calls == [("k", ["first"]), ("k", ["again"])]


def test_an_idle_batcher_waits_for_a_burst_still_coming_in() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder, BatchLimits(max_batch_size=8, max_wait_ms=60_000, idle_wait_ms=200))

    async def spaced(index: int) -> list[tuple[str, object]]:
        await asyncio.sleep(0.02 * index)  # each well within idle_wait_ms of the one before
        return await batcher.submit("k", [str(index)])

    async def scenario() -> None:
        await asyncio.wait_for(asyncio.gather(*(spaced(i) for i in range(4))), timeout=10)

    asyncio.run(scenario())
    batcher.close()
    assert recorder.calls == [("k", ["0", "1", "2", "3"])]


def test_while_a_batch_runs_a_free_stream_waits_for_company() -> None:
    release = threading.Event()
    recorder = Recorder(release)
    batcher = Batcher(recorder, BatchLimits(max_batch_size=4, max_wait_ms=300, streams=2))

    async def scenario() -> None:
        first = asyncio.ensure_future(batcher.submit("k", ["first"]))
        await asyncio.sleep(0.05)  # the first batch runs (held by `release`) on one stream
        second = asyncio.ensure_future(batcher.submit("k", ["second"]))
        await asyncio.sleep(0.05)  # within max_wait_ms: the second waits on the free stream
        third = asyncio.ensure_future(batcher.submit("k", ["third"]))
        await asyncio.sleep(0.5)
        release.set()
        await asyncio.gather(first, second, third)

    asyncio.run(scenario())
    batcher.close()
    assert sorted(items for _, items in recorder.calls) == [["first"], ["second", "third"]]


class HoldsLong:
    """A batch function that holds the batch ["long"] until `release` and logs each batch's size;
    every other batch takes `seconds`."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.release = threading.Event()
        self.sizes: list[int] = []
        self.seconds = seconds

    def __call__(self, key: Hashable, items: list[str]) -> list[str]:
        if items == ["long"]:
            self.release.wait(5)
        else:
            time.sleep(self.seconds)
        self.sizes.append(len(items))
        return items


def test_a_free_stream_leaves_a_busy_streams_part_of_the_queue_to_it() -> None:
    run = HoldsLong()
    batcher = Batcher(run, BatchLimits(max_batch_size=16, max_wait_ms=50, streams=2))

    async def scenario() -> None:
        long = asyncio.ensure_future(batcher.submit("k", ["long"]))
        await asyncio.sleep(0.05)  # on one stream until released
        burst = asyncio.gather(*(batcher.submit("k", [str(i)]) for i in range(12)))
        await asyncio.sleep(0.3)
        # Not all 12 at once: the busy stream's part waited, then went to the first free stream.
        assert run.sizes == [8, 4]
        run.release.set()
        await asyncio.gather(long, burst)

    asyncio.run(scenario())
    batcher.close()
    assert run.sizes == [8, 4, 1]


def test_items_left_for_a_busy_stream_wait_for_the_clients_of_the_batch_that_frees_it() -> None:
    run = HoldsLong(seconds=0.15)  # far longer than max_wait_ms
    batcher = Batcher(run, BatchLimits(max_batch_size=16, max_wait_ms=50, streams=2))

    async def scenario() -> None:
        long = asyncio.ensure_future(batcher.submit("k", ["long"]))
        await asyncio.sleep(0.05)
        first = [asyncio.ensure_future(batcher.submit("k", [f"a{i}"])) for i in range(12)]
        await asyncio.gather(*first[:8])  # a batch of 8; 4 have waited longer than max_wait_ms
        await asyncio.sleep(0.02)  # its clients come back, within max_wait_ms of its end
        back = [asyncio.ensure_future(batcher.submit("k", [f"b{i}"])) for i in range(4)]
        await asyncio.gather(*first, *back)
        run.release.set()
        await long

    asyncio.run(scenario())
    batcher.close()
    assert run.sizes == [8, 8, 1]
