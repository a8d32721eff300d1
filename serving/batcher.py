"""Dynamic batching: concurrent work items with the same key run as one call.

Items wait in a bounded queue. Up to `streams` batches run at once, each on its own inference
thread. While a stream is free, one dispatcher takes the key of the oldest waiting item, waits
until that key has a stream's share of a full batch (`max_batch_size / streams`) or the oldest
has waited `max_wait_ms`, and runs the batch: its part of the waiting items shared out among
all streams (a busy stream's part waits for it), at least a stream's share and at most
`max_batch_size`. While no batch runs and no request is being read, it waits only until no item
came for `idle_wait_ms`, and not at all once every client of the batch just answered has sent
again: a lone request does not wait for company that is not coming. Items
that arrive while every stream is busy join the next batch. A full queue raises `QueueFull`,
which the routes answer with 429 and Retry-After.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# run_batch(key, items) -> one result per item, in order
BatchFn = Callable[[Hashable, list[Any]], Sequence[Any]]


@dataclass(frozen=True)
class BatchLimits:
    max_batch_size: int = 16
    max_wait_ms: float = 10.0
    max_queue: int = 256  # items waiting, all keys together
    # While requests are still being read (auth, tokenizing), a batch may wait up to this long
    # for them: a burst of concurrent requests then shares one call instead of two.
    max_hold_ms: float = 250.0
    # While no batch runs and nothing is being read, company can only be a burst's requests not
    # yet read (their bytes wait in the event loop): the wait ends once none came for this long
    # (and by max_wait_ms), so a lone request does not pay max_wait_ms. Starting a burst's head
    # alone splits the load unevenly between streams as long as it lasts (closed-loop c=16:
    # batches of 5 and 11 in place of 8 and 8).
    idle_wait_ms: float = 5.0
    # Batches that run at once. On a CPU host, concurrent batches on a core's share each beat one
    # batch on all cores: decoding is many small ops, which intra-op threads share out poorly.
    streams: int = 1

    def __post_init__(self) -> None:
        if min(self.max_batch_size, self.max_queue, self.streams) < 1:
            raise ValueError("max_batch_size, max_queue and streams must be >= 1")
        if min(self.max_wait_ms, self.idle_wait_ms, self.max_hold_ms) < 0:
            raise ValueError("max_wait_ms, idle_wait_ms and max_hold_ms must be >= 0")


@dataclass(frozen=True)
class Timing:
    """Where one item's time went."""

    queue_s: float
    inference_s: float
    batch_size: int


class Arrival:
    """A request on its way to `submit`; the dispatcher holds a batch a little for it."""

    def __init__(self, batcher: Batcher[Any, Any]) -> None:
        self._batcher = batcher
        self._open = True
        batcher._arriving += 1

    def done(self) -> None:
        if self._open:
            self._open = False
            self._batcher._arriving -= 1
            self._batcher._wakeup.set()

    def __enter__(self) -> Arrival:
        return self

    def __exit__(self, *exc: object) -> None:
        self.done()


class QueueFull(Exception):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"the inference queue is full; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


@dataclass
class _Pending:
    key: Hashable
    item: Any
    future: asyncio.Future[tuple[Any, Timing]]
    enqueued: float = field(default_factory=time.perf_counter)


class Batcher(Generic[Item, Result]):
    """Groups items by key into calls of `run_batch`; see the module docstring."""

    def __init__(self, run_batch: BatchFn, limits: BatchLimits,
                 on_depth: Callable[[int], None] | None = None,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self._run_batch = run_batch
        self.limits = limits
        self._on_depth = on_depth or (lambda depth: None)
        self._on_batch = on_batch or (lambda size: None)
        self._pending: dict[Hashable, deque[_Pending]] = {}
        self._depth = 0
        self._arriving = 0
        self._running: set[asyncio.Task[None]] = set()
        # Made on first use, so a batcher closed by one app lifespan works again in the next.
        self._executor: ThreadPoolExecutor | None = None
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._recent_batch_s = 1.0  # seconds per batch, smoothed; sizes Retry-After
        self._freed_at = 0.0  # when a batch last finished, freeing its stream
        # Clients answered by finished batches that have not sent again: the company on its way.
        self._due = 0

    @property
    def depth(self) -> int:
        return self._depth

    def arriving(self) -> Arrival:
        """Mark a request that will submit soon (`with batcher.arriving() as arrival: ...`)."""
        return Arrival(self)

    async def submit(self, key: Hashable, items: list[Item],
                     arrival: Arrival | None = None) -> list[tuple[Result, Timing]]:
        """Queue the items (all or none) and wait for their results, in order."""
        if arrival is not None:
            arrival.done()
        if self._depth + len(items) > self.limits.max_queue:
            raise QueueFull(self._retry_after_s())
        wakeup = self._ensure_running()
        loop = asyncio.get_running_loop()
        entries = [_Pending(key, item, loop.create_future()) for item in items]
        self._pending.setdefault(key, deque()).extend(entries)
        self._due = max(0, self._due - len(entries))
        self._set_depth(self._depth + len(entries))
        wakeup.set()
        try:
            return list(await asyncio.gather(*(e.future for e in entries)))
        except asyncio.CancelledError:
            self._drop(entries)
            raise

    def close(self) -> None:
        for task in (self._task, *self._running):
            if task is not None:
                task.cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def _ensure_running(self) -> asyncio.Event:
        # Started lazily in the serving loop: a mounted app gets no lifespan events, and a
        # loop that went away (tests) takes its dispatcher with it.
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._loop is not loop:
            self._loop = loop
            self._wakeup = asyncio.Event()
            self._running = set()
            self._task = loop.create_task(self._dispatch_forever(self._wakeup))
        return self._wakeup

    def _retry_after_s(self) -> int:
        batches_ahead = math.ceil(self._depth / self.limits.max_batch_size)
        return max(1, math.ceil(batches_ahead * self._recent_batch_s / self.limits.streams))

    def _set_depth(self, depth: int) -> None:
        self._depth = depth
        self._on_depth(depth)

    def _drop(self, entries: list[_Pending]) -> None:
        """Forget items whose caller went away before they ran."""
        for entry in entries:
            queue = self._pending.get(entry.key)
            if queue is not None and entry in queue:
                queue.remove(entry)
                self._set_depth(self._depth - 1)

    def _oldest_key(self) -> Hashable | None:
        heads = [(q[0].enqueued, i, k) for i, (k, q) in enumerate(self._pending.items()) if q]
        return min(heads)[2] if heads else None

    async def _dispatch_forever(self, wakeup: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while True:
            key = self._oldest_key()
            if key is None or len(self._running) >= self.limits.streams:
                wakeup.clear()
                await wakeup.wait()
                continue
            await self._gather(key, wakeup)
            batch = self._take(key)
            if batch:
                task = loop.create_task(self._run(batch))
                self._running.add(task)
                task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._freed_at = time.perf_counter()
        self._wakeup.set()

    async def _gather(self, key: Hashable, wakeup: asyncio.Event) -> None:
        """Wait until the key's batch is full or its items have waited long enough (`_deadline`)."""
        queue = self._pending[key]
        while queue and len(queue) < self._stream_share():
            remaining = self._deadline(queue) - time.perf_counter()
            if remaining <= 0:
                return
            wakeup.clear()
            try:
                await asyncio.wait_for(wakeup.wait(), remaining)
            except TimeoutError:
                return

    def _deadline(self, queue: deque[_Pending]) -> float:
        """When a batch of these items starts without more company (see `BatchLimits`).

        The wait counts from when the oldest item could first have run: its arrival, or the end
        of the batch that freed a stream. Items left waiting for a stream would otherwise start
        at once without the requests that the finished batch's clients are sending back, and an
        uneven split (4, 8 and 4 on two streams) went on for as long as a closed-loop load lasted.
        """
        first = max(queue[0].enqueued, self._freed_at)
        if self._arriving:
            return first + self.limits.max_hold_ms / 1000
        if self._running:
            return first + self.limits.max_wait_ms / 1000
        # Idle: a burst still coming in keeps the wait going; a lone request goes at once.
        if not self._due and first - self._freed_at <= self.limits.max_wait_ms / 1000:
            # Every client of the batch just answered is back, so no company is on its way (a
            # closed loop at c=1 paid idle_wait_ms on every request). After a quiet spell a
            # fresh burst may still be coming in: the rule below waits for it.
            return first
        latest = max(queue[-1].enqueued, self._freed_at)
        return min(first + self.limits.max_wait_ms / 1000, latest + self.limits.idle_wait_ms / 1000)

    def _stream_share(self) -> int:
        """One stream's part of a full load: a batch this large waits for no more items."""
        return math.ceil(self.limits.max_batch_size / self.limits.streams)

    def _take(self, key: Hashable) -> list[_Pending]:
        """The key's next batch: its part of the waiting items among all streams, and at least a
        stream's share (smaller batches would split the load into ever more calls).

        The busy streams' parts wait for them: a free stream that took them all kept an uneven
        split for as long as a closed-loop load lasted (batches of 4 and 12 on two streams, each
        client coming back to the stream that answered it), where this one evens out in a round.
        """
        queue = self._pending.get(key)
        if not queue:
            self._pending.pop(key, None)
            return []
        share = max(math.ceil(len(queue) / self.limits.streams), self._stream_share())
        size = min(share, len(queue), self.limits.max_batch_size)
        batch = [queue.popleft() for _ in range(size)]
        if not queue:
            del self._pending[key]
        self._set_depth(self._depth - len(batch))
        return [entry for entry in batch if not entry.future.done()]

    async def _run(self, batch: list[_Pending]) -> None:
        if not batch:
            return
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        key, items = batch[0].key, [entry.item for entry in batch]
        try:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.limits.streams, "inference")
            results = await loop.run_in_executor(self._executor, self._run_batch, key, items)
        except Exception as exc:  # every caller of the batch gets the failure
            for entry in batch:
                if not entry.future.done():
                    entry.future.set_exception(exc)
            return
        elapsed = time.perf_counter() - started
        self._recent_batch_s = 0.8 * self._recent_batch_s + 0.2 * elapsed
        self._on_batch(len(batch))
        self._due += len(batch)
        for entry, result in zip(batch, results, strict=True):
            if not entry.future.done():
                entry.future.set_result((result, Timing(started - entry.enqueued, elapsed, len(batch))))
