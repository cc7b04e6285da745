"""Dynamic batching for ``compt serve``: rows from requests that arrive together are predicted in one batch.

Each request puts its rows in one queue; one loop takes the oldest row's *key* (the prediction mode and mask:
rows predicted differently cannot share a pass) and gathers the waiting rows of that key, whatever their task,
until ``max_batch_size`` rows are in the batch or ``max_wait_s`` has passed since the oldest of them arrived.
The batch then goes to ``run`` (awaited: the model runs elsewhere, one batch at a time, in a process of its
own for ``compt serve``), while the event loop goes on taking requests; each request gets its rows' answers back
in its own order.

With a *shape* (``shape(item)``: input tokens, rank candidates, candidate tokens), rows whose longest candidate
has another number of tokens than the oldest row's only fill its batch: when at least half a batch of rows like
it wait, the batch holds only them (rank scoring pads every candidate of a batch to the longest: a 2-token label
beside stsb's 4-token values costs three decoder positions instead of one). When more of the rows it may hold
wait than one batch holds, the batch is the oldest row and the waiting rows most like it: ordered by candidate
length, then input length, the run of ``max_batch_size`` rows around the oldest that pads least. A batch of
rows of similar lengths pads them less (a padded position costs what a real one does), and the oldest row
still goes first, so no row waits behind ones that came after it for longer than the rows before it take.

Nothing here knows about HTTP or torch: ``run`` is any coroutine function from a list of items to a list of
answers (:func:`in_thread` makes one of a plain function, run in a worker thread).

    batcher = MicroBatcher(in_thread(lambda key, items: [item * 2 for item in items]), 32, max_wait_s=0.005)
    answers = await batcher.submit("key", [1, 2, 3])   # [2, 4, 6]
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

Shape = tuple[int, int, int]
"""A row's padded dimensions: ``(input tokens, rank candidates, tokens of its longest candidate)``."""


class QueueFull(Exception):
    """More rows are waiting than the batcher holds (the server answers 503: retry later)."""


@dataclass
class _Waiting:
    key: Hashable
    item: Any
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)


Run = Callable[[Hashable, list[Any]], Awaitable[Sequence[Any]]]
"""``await run(key, items)``: the answers to one batch, one per item, in order."""


def in_thread(function: Callable[[Hashable, list[Any]], Sequence[Any]]) -> Run:
    """A batcher's ``run`` that calls the plain ``function(key, items)`` in a thread of its own, so that it blocks
    no event loop."""
    worker = ThreadPoolExecutor(1, thread_name_prefix="compt-batch")

    async def run(key: Hashable, items: list[Any]) -> Sequence[Any]:
        return await asyncio.get_running_loop().run_in_executor(worker, function, key, items)

    return run


class MicroBatcher:
    """Batches items submitted by concurrent requests (see the module's docstring).

    Args:
        run: ``await run(key, items)``: the answers (one per item, in order); one call at a time.
        max_batch_size: the most items in one call of ``run``.
        max_wait_s: how long the oldest waiting item may wait for others before its batch runs (0: run at
            once with whatever is waiting).
        max_waiting: the most items waiting at once; :meth:`submit` raises :class:`QueueFull` beyond it.
        shape: an item's :data:`Shape`; with it, a batch picked among more waiting items than it holds is
            the one around the oldest that pads least (see the module's docstring). Without it, the oldest.
    """

    def __init__(
        self,
        run: Run,
        max_batch_size: int,
        max_wait_s: float,
        max_waiting: int | None = None,
        shape: Callable[[Any], Shape] | None = None,
    ) -> None:
        if max_batch_size < 1 or max_wait_s < 0:
            raise ValueError(f"max_batch_size={max_batch_size} must be ≥ 1 and max_wait_s={max_wait_s} ≥ 0")
        self.run = run
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_waiting = max_waiting if max_waiting is not None else 64 * max_batch_size
        self.shape = shape
        self._waiting: deque[_Waiting] = deque()
        self._arrived = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.batches = 0
        """batches run so far"""
        self.items = 0
        """items answered so far"""
        self.busy_s = 0.0
        """seconds spent waiting for ``run``'s answers"""

    @property
    def waiting(self) -> int:
        """Items waiting for a batch."""
        return len(self._waiting)

    def start(self) -> None:
        """Start the batching loop on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="compt-batcher")

    async def stop(self) -> None:
        """Stop the loop after the batch in flight (call when no request waits: the server drains first)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for waiting in self._waiting:
            if not waiting.future.done():
                waiting.future.set_exception(RuntimeError("the server stopped before this row was predicted"))
        self._waiting.clear()

    async def submit(self, key: Hashable, items: Sequence[Any]) -> list[Any]:
        """Queue ``items`` (predicted under ``key``) and wait for their answers, in order.

        Raises:
            QueueFull: the queue cannot take ``items`` now.
            Exception: whatever ``run`` raised for their batch.
        """
        if len(self._waiting) + len(items) > self.max_waiting:
            raise QueueFull(f"{len(self._waiting)} rows are waiting (at most {self.max_waiting})")
        loop = asyncio.get_running_loop()
        entries = [_Waiting(key, item, loop.create_future()) for item in items]
        self._waiting.extend(entries)
        self._arrived.set()
        try:
            return list(await asyncio.gather(*(e.future for e in entries)))
        except asyncio.CancelledError:  # the client went away: its rows need no batch
            for entry in entries:
                entry.future.cancel()
            raise

    async def _loop(self) -> None:
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            started = time.perf_counter()
            try:
                answers = await self.run(batch[0].key, [w.item for w in batch])
            except (
                Exception
            ) as err:  # a bug or the device failing: the batch's requests get it, the loop lives
                for waiting in batch:
                    if not waiting.future.done():
                        waiting.future.set_exception(err)
                continue
            finally:
                self.busy_s += time.perf_counter() - started
            self.batches += 1
            self.items += len(batch)
            for waiting, answer in zip(batch, answers):
                if not waiting.future.done():
                    waiting.future.set_result(answer)

    async def _next_batch(self) -> list[_Waiting]:
        """Wait for the oldest item's batch to fill or its time to pass; take its items out of the queue."""
        while not self._live_head():
            self._arrived.clear()
            await self._arrived.wait()
        oldest = self._waiting[0]
        deadline = oldest.arrived + self.max_wait_s
        while self._count(oldest.key) < self.max_batch_size:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                break
        live = [w for w in self._waiting if not w.future.done()]  # others were cancelled: their clients left
        same = self._alike([w for w in live if w.key == oldest.key], oldest)
        chosen = self._choose(same) if len(same) > self.max_batch_size else same
        taken = {id(w) for w in chosen}
        self._waiting = deque(w for w in live if id(w) not in taken)
        return [w for w in same if id(w) in taken]  # in arrival order

    def _alike(self, same: list[_Waiting], oldest: _Waiting) -> list[_Waiting]:
        """The waiting items ``same`` (one key, oldest first) that may share the oldest's batch: those whose
        longest candidate has as many tokens as the oldest's, when at least half a batch of them wait; else all
        (rows of other lengths fill the batch). Without :attr:`shape`, all."""
        if self.shape is None:
            return same
        length = self.shape(oldest.item)[2]
        alike = [w for w in same if self.shape(w.item)[2] == length]
        return alike if len(alike) >= self.max_batch_size / 2 else same

    def _choose(self, same: list[_Waiting]) -> list[_Waiting]:
        """``max_batch_size`` of the waiting items ``same`` (one key, oldest first), the oldest among them: the
        first ones without :attr:`shape`, else the run around the oldest in shape order that pads least."""
        size = self.max_batch_size
        if self.shape is None:
            return same[:size]
        shapes = [self.shape(w.item) for w in same]
        order = sorted(range(len(same)), key=lambda i: (shapes[i][2], shapes[i][0]))
        at = order.index(0)
        inputs = [shapes[i][0] for i in order]
        candidates = [0, *accumulate(shapes[i][1] for i in order)]
        lengths = [shapes[i][2] for i in order]  # ascending: a run's longest candidate is its last row's

        def cost(start: int) -> int:
            end = start + size
            return size * max(inputs[start:end]) + (candidates[end] - candidates[start]) * lengths[end - 1]

        best = min(range(max(0, at - size + 1), min(at, len(same) - size) + 1), key=cost)
        return [same[i] for i in order[best : best + size]]

    def _live_head(self) -> bool:
        """Drop cancelled items at the head of the queue; whether one is left."""
        while self._waiting and self._waiting[0].future.done():
            self._waiting.popleft()
        return bool(self._waiting)

    def _count(self, key: Hashable) -> int:
        return sum(1 for w in self._waiting if w.key == key and not w.future.done())
