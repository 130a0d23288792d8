"""A three-stage pipeline for one process: decode on threads, the model on the calling thread,
writes on one writer thread, so decoding and storing overlap the model.

Generic over what flows through it (pseudo-labelling uses it with images, depth results and
database commits). Order is kept: batches reach ``infer`` and ``on_written`` in input order,
and writes run one at a time in that order. Memory is bounded: at most
``batch_size * (prefetch_batches + 1)`` items are decoded ahead and ``max_pending_writes``
batches wait for the writer. An exception in any stage stops the run and is raised in the
caller's thread; writes already handed to the writer finish first (their effects are whole).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

from depthweb.errors import InputError

T = TypeVar("T")  # an input item
D = TypeVar("D")  # what decoding one item gives
R = TypeVar("R")  # what the model gives for a batch
W = TypeVar("W")  # what writing a batch gives


class Pipeline(Generic[T, D, R, W]):
    """``decode(item)`` on ``decode_threads`` threads (``InputError`` -> ``on_error(item,
    exc)``, the item is skipped), ``infer(items, decoded)`` per batch on the calling thread,
    ``write(result)`` on one writer thread, ``on_written(written)`` on the calling thread."""

    def __init__(
        self,
        *,
        decode: Callable[[T], D],
        infer: Callable[[list[T], list[D]], R],
        write: Callable[[R], W],
        on_written: Callable[[W], None],
        on_error: Callable[[T, InputError], None],
        decode_threads: int = 2,
        prefetch_batches: int = 2,
        max_pending_writes: int = 2,
    ) -> None:
        self.decode, self.infer, self.write = decode, infer, write
        self.on_written, self.on_error = on_written, on_error
        self.decode_threads = max(1, decode_threads)
        self.prefetch_batches = max(0, prefetch_batches)
        self.max_pending_writes = max(1, max_pending_writes)

    def run(self, items: Sequence[T], batch_size: int) -> None:
        """Push ``items`` through the stages in batches of ``batch_size`` (>= 1)."""
        window = batch_size * (self.prefetch_batches + 1)
        with ThreadPoolExecutor(self.decode_threads, thread_name_prefix="pl-decode") as dec, \
                ThreadPoolExecutor(1, thread_name_prefix="pl-write") as writer:
            decoding: deque[tuple[T, Future[D]]] = deque()
            writes: deque[Future[W]] = deque()
            source = iter(items)
            failed = threading.Event()
            try:
                self._fill(source, decoding, dec, window)
                while decoding:
                    batch = [decoding.popleft() for _ in range(min(batch_size, len(decoding)))]
                    self._fill(source, decoding, dec, window)
                    ok_items, ok_data = self._collect(batch)
                    if ok_items:
                        writes.append(writer.submit(self._write, self.infer(ok_items, ok_data),
                                                    failed))
                    while writes and (writes[0].done() or len(writes) > self.max_pending_writes):
                        self.on_written(writes.popleft().result())
                while writes:
                    self.on_written(writes.popleft().result())
            except BaseException:
                for _, fut in decoding:
                    fut.cancel()
                for fut in writes:
                    fut.cancel()  # a write already running finishes (the executor waits)
                raise

    def _write(self, result: R, failed: threading.Event) -> W:
        """``write`` unless an earlier write failed (then nothing after it is written)."""
        if failed.is_set():
            raise _Skipped("an earlier write failed")
        try:
            return self.write(result)
        except BaseException:
            failed.set()
            raise

    def _fill(self, source: Iterator[T], decoding: deque, pool: ThreadPoolExecutor,
              window: int) -> None:
        while len(decoding) < window:
            item = next(source, _END)
            if item is _END:
                return
            decoding.append((item, pool.submit(self.decode, item)))

    def _collect(self, batch: list[tuple[T, Future[D]]]) -> tuple[list[T], list[D]]:
        ok_items: list[T] = []
        ok_data: list[D] = []
        for item, fut in batch:
            try:
                data = fut.result()
            except InputError as exc:
                self.on_error(item, exc)
                continue
            ok_items.append(item)
            ok_data.append(data)
        return ok_items, ok_data


_END = object()


class _Skipped(RuntimeError):
    """A write not attempted because an earlier one failed (never reaches the caller: the
    earlier failure is raised first)."""
