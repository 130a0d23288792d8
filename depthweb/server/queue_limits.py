"""Cost caps enforced where a request joins the model queue, before it waits or runs.

Gradio's queue only has a global ``max_size``, and handlers run after dequeue, so one client
could fill the queue (or send one huge image) and make everyone wait. :func:`install_queue_limits`
wraps each Blocks' ``Queue.push`` (the call behind ``POST .../queue/join``) so that a request
for a model event (``concurrency_id == "gpu"``) is refused at once, with one sentence, when

- an image it carries (a file dict pointing into Gradio's upload folder) has more than
  ``DEPTHWEB_PREDICT_MAX_PIXELS`` pixels (read from the file header only), or
- its user (logged in) or client address (anonymous; see :class:`depthweb.server.guards.
  ClientAddress`) already has ``DEPTHWEB_QUEUE_PER_USER`` model requests waiting in any of the
  given Blocks' queues.

The stereo cost cap (pixels x disparities) lives in the stereo service; this module bounds what
one client may keep waiting.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import gradio as gr
from gradio import route_utils
from gradio.utils import get_upload_folder
from PIL import Image, UnidentifiedImageError

from depthweb.config import Settings

log = logging.getLogger(__name__)

MODEL_QUEUE = "gpu"
Refusal = tuple[bool, str, str]


def _file_paths(data: Any) -> Iterator[str]:
    """Paths of the file dicts (``{"path": ...}``) anywhere in a request's ``data``."""
    if isinstance(data, dict):
        path = data.get("path")
        if isinstance(path, str):
            yield path
        for value in data.values():
            if isinstance(value, dict | list):
                yield from _file_paths(value)
    elif isinstance(data, list):
        for item in data:
            yield from _file_paths(item)


def oversized_image(data: Any, max_pixels: int, upload_root: Path) -> str | None:
    """One sentence about the first image in ``data`` over ``max_pixels``, else None. Only
    files inside ``upload_root`` are looked at (others are refused later by Gradio)."""
    root = upload_root.resolve()
    for raw in _file_paths(data):
        path = Path(raw)
        try:
            resolved = path.resolve()
            if not resolved.is_relative_to(root) or not resolved.is_file():
                continue
            with Image.open(resolved) as im:  # reads the header only
                width, height = im.size
        except Image.DecompressionBombError:  # Pillow refuses the header itself: far too large
            return (f"{path.name} is too large for this server (the limit is "
                    f"{max_pixels / 1e6:.1f} MP): resize it and try again.")
        except (OSError, UnidentifiedImageError, ValueError):
            continue  # not an image (or unreadable): the handler reports it
        if width * height > max_pixels:
            return (f"{path.name} is too large for this server ({width}x{height} = "
                    f"{width * height / 1e6:.1f} MP; the limit is {max_pixels / 1e6:.1f} MP): "
                    "resize it and try again.")
    return None


def _requester(username: str | None, request: Any) -> str:
    if username:
        return f"user:{username}"
    client = getattr(request, "client", None)
    return f"address:{getattr(client, 'host', None) or 'unknown'}"


def waiting(blocks_list: Sequence[gr.Blocks], key: str, queue_id: str = MODEL_QUEUE) -> int:
    """How many model requests of ``key`` (:func:`_requester`) wait in these Blocks' queues."""
    count = 0
    for blocks in blocks_list:
        event_queue = blocks._queue.event_queue_per_concurrency_id.get(queue_id)
        for event in list(event_queue.queue) if event_queue is not None else []:
            if _requester(event.username, event.request) == key:
                count += 1
    return count


def install_queue_limits(blocks_list: Sequence[gr.Blocks], settings: Settings) -> None:
    """Wrap every Blocks' ``Queue.push`` with the caps (module docstring). Call after the
    Blocks are queued and mounted (``.queue()`` makes a new ``Queue``)."""
    blocks_list = list(blocks_list)
    max_pixels, per_user = int(settings.predict_max_pixels), int(settings.queue_per_user)

    for blocks in blocks_list:
        queue = blocks._queue
        original = queue.push
        if getattr(original, "depthweb_limited", False):
            continue

        async def push(body: Any, request: Any, username: str | None,
                       _orig: Any = original, _blocks: gr.Blocks = blocks) -> Refusal:
            try:
                fn = route_utils.get_fn(_blocks, None, body)
            except (KeyError, IndexError, route_utils.FnIndexInferError):
                return await _orig(body, request, username)
            if fn.concurrency_id == MODEL_QUEUE:
                refusal = await asyncio.to_thread(
                    oversized_image, body.data, max_pixels, Path(get_upload_folder()))
                if refusal:
                    return False, refusal, "error"
                key = _requester(username, request)
                if per_user and waiting(blocks_list, key) >= per_user:
                    log.warning("queue join refused for %s: %d model requests waiting", key,
                                per_user)
                    return (False, f"You already have {per_user} request(s) waiting for the "
                            "model; wait for them to finish, then try again.", "error")
            return await _orig(body, request, username)

        push.depthweb_limited = True  # type: ignore[attr-defined]
        queue.push = push  # type: ignore[method-assign]
