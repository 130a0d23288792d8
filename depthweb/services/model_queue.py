"""The one model queue of the process: every model call of both web apps takes its turn here.

The Studio (``/``) and the review platform (``/review``) are two Gradio Blocks in one process.
Gradio's ``concurrency_id`` queues are per Blocks, so on their own they would let an admin's
pseudo-labelling run beside a visitor's ``/predict`` (two models in memory, two jobs on one
GPU). :data:`QUEUE` is a process-wide lock taken around every model call: :func:`model_call`
wraps a function (the Studio's ``predict_fn``: predict, compare, stereo's mono fill, video
frames), :func:`run` runs one call (the admin's pseudo-labelling). Calls take their turn in
arrival order (a FIFO of waiters), one at a time.

**ZeroGPU.** On a ZeroGPU Space (``SPACES_ZERO_GPU=true``) :func:`model_call` also wraps the
function in ``spaces.GPU`` with a duration that fits the work (:func:`predict_duration`: a
base plus a per-image share, capped at :data:`ZERO_GPU_MAX_S`); the turn is taken *before*
the GPU is requested, so waiting in our queue spends none of a visitor's GPU quota. Jobs that
do not fit ZeroGPU's per-call and daily quotas are refused there with one sentence
(:func:`refuse_long_job`, :func:`check_pseudo_label_fits`): training, and web pseudo-labelling
runs over :data:`PSEUDO_LABEL_MAX_IMAGES` images. A smaller web pseudo-labelling run takes its
turn here but is not sent to ``spaces.GPU`` (ZeroGPU pickles a call's arguments into a worker,
and the run writes to the database as it goes), so on ZeroGPU it runs on the CPU. Off ZeroGPU
``spaces`` is never imported.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from depthweb.errors import InputError

log = logging.getLogger(__name__)

R = TypeVar("R")

ZERO_GPU_MAX_S = 120
"""Longest GPU lease asked of ZeroGPU for one call (seconds)."""
PREDICT_BASE_S = 30
PREDICT_PER_IMAGE_S = 5
PSEUDO_LABEL_MAX_IMAGES = 16
"""On ZeroGPU, a web pseudo-labelling run may cover at most this many images."""


class ModelQueue:
    """A fair (first come, first served) lock: one model call at a time in this process."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: deque[object] = deque()
        self._holder: str | None = None

    @property
    def busy_with(self) -> str | None:
        """What the current turn is for (``None`` when idle)."""
        return self._holder

    @property
    def waiting(self) -> int:
        """How many calls wait for their turn."""
        return len(self._waiting)

    @contextmanager
    def turn(self, what: str) -> Iterator[None]:
        """Hold the queue for one model call; ``what`` names it in logs."""
        ticket = object()
        with self._cond:
            self._waiting.append(ticket)
            while self._holder is not None or self._waiting[0] is not ticket:
                self._cond.wait()
            self._waiting.popleft()
            self._holder = what
        try:
            yield
        finally:
            with self._cond:
                self._holder = None
                self._cond.notify_all()


QUEUE = ModelQueue()
"""The process-wide queue (both web apps)."""


def on_zero_gpu() -> bool:
    """True on a ZeroGPU Space (the ``spaces`` package reads the same variable)."""
    return os.environ.get("SPACES_ZERO_GPU", "").strip().lower() in {"1", "true", "yes"}


def predict_duration(images: Sequence[Any], *_args: Any, **_kwargs: Any) -> int:
    """GPU seconds to ask ZeroGPU for ``predict_images(images, ...)``: a base (model load and
    warm-up) plus a share per image, capped at :data:`ZERO_GPU_MAX_S`."""
    n = len(images) if hasattr(images, "__len__") else 1
    return min(ZERO_GPU_MAX_S, PREDICT_BASE_S + PREDICT_PER_IMAGE_S * max(n, 1))


def on_gpu(fn: Callable[..., R], duration: int | Callable[..., int]) -> Callable[..., R]:
    """``spaces.GPU(fn, duration=duration)`` on ZeroGPU, else ``fn`` unchanged (``spaces`` is
    then not imported). Call it while building the app, never at import time."""
    if not on_zero_gpu():
        return fn
    import spaces

    return spaces.GPU(fn, duration=duration)


def serialised(fn: Callable[..., R], what: str) -> Callable[..., R]:
    """``fn`` taking its turn in :data:`QUEUE` on every call."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> R:
        with QUEUE.turn(what):
            return fn(*args, **kwargs)

    return call


def model_call(fn: Callable[..., R], what: str,
               duration: int | Callable[..., int] = predict_duration) -> Callable[..., R]:
    """``fn`` serialised in :data:`QUEUE` and, on ZeroGPU, run under ``spaces.GPU`` (the turn
    is taken first, then the GPU is requested)."""
    return serialised(on_gpu(fn, duration), what)


def run(what: str, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """``fn(*args, **kwargs)`` in its turn of :data:`QUEUE` (a call made once, e.g. a web
    pseudo-labelling run)."""
    with QUEUE.turn(what):
        return fn(*args, **kwargs)


def refuse_long_job(what: str, where: str) -> None:
    """On ZeroGPU: raise :class:`InputError` saying ``what`` does not fit and ``where`` to run
    it; elsewhere nothing."""
    if on_zero_gpu():
        raise InputError(f"{what} does not fit ZeroGPU's time limits (minutes per visitor "
                         f"and day); {where}.")


def check_pseudo_label_fits(limit: int | None) -> None:
    """On ZeroGPU, refuse a web pseudo-labelling run without a limit or over
    :data:`PSEUDO_LABEL_MAX_IMAGES` images."""
    if limit is None or limit > PSEUDO_LABEL_MAX_IMAGES:
        refuse_long_job(
            f"Pseudo-labelling more than {PSEUDO_LABEL_MAX_IMAGES} images at once",
            f"set 'at most' to {PSEUDO_LABEL_MAX_IMAGES} or fewer, or run `depthweb pseudo-label` "
            "on a machine with a GPU against the same database")

