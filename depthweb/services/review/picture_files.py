"""The review page's pictures as encoded image files, encoded once per content.

A page shows the photo (twice: beside the depth pictures and as the brush editor's background),
the teacher's depth and the label. Handing Gradio numpy arrays makes it encode every one of
them again on every action (a 1024 px PNG for the editor alone took most of an action's time,
measured with py-spy on a 3024x2268 photo); handing it a file path costs a hash of the file.
:class:`PictureFiles` keeps the encoded files of the most recent ``max_files`` pictures in a
private temporary folder (Gradio serves only files under the temporary folder or the working
directory, and copies them into its own cache), keyed like :class:`PageCache` entries: by
content, so a file never goes stale. A file's path is handed out only once it is complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

FORMATS = {"jpeg": ".jpg", "png": ".png"}
JPEG_QUALITY = 90


class PictureFiles:
    """A thread-safe LRU of encoded picture files; the folder is made on first use and removed
    when the object is collected or :meth:`close` is called."""

    def __init__(self, max_files: int = 1024) -> None:
        self.max_files = max_files
        self._files: OrderedDict[Any, Path] = OrderedDict()
        self._lock = threading.Lock()
        self._dir: Path | None = None
        self._finalizer: weakref.finalize | None = None

    def _folder(self) -> Path:
        with self._lock:
            if self._dir is None:
                self._dir = Path(tempfile.mkdtemp(prefix="depthweb-pictures-"))
                self._finalizer = weakref.finalize(self, shutil.rmtree, str(self._dir),
                                                   ignore_errors=True)
            return self._dir

    def path(self, key: Any, picture: np.ndarray, fmt: str = "jpeg") -> str:
        """The file of ``picture`` (RGB uint8 (h, w, 3)) stored under ``key`` in ``fmt``
        (jpeg | png), encoded only when the key is new."""
        hit = self.get(key, fmt)
        if hit is not None:
            return hit
        data = encode(picture, fmt)
        fd, tmp = tempfile.mkstemp(dir=self._folder(), suffix=FORMATS[fmt])
        with os.fdopen(fd, "wb") as f:  # the path is handed out only once it is complete
            f.write(data)
        return self._keep(key, fmt, Path(tmp))

    def _keep(self, key: Any, fmt: str, final: Path) -> str:
        with self._lock:
            old = self._files.pop((key, fmt), None)
            self._files[(key, fmt)] = final
            evicted = [old] if old is not None and old != final else []
            while len(self._files) > self.max_files:
                evicted.append(self._files.popitem(last=False)[1])
        for p in evicted:
            p.unlink(missing_ok=True)
        return str(final)

    def get(self, key: Any, fmt: str) -> str | None:
        """The file of ``key`` in ``fmt`` when it is kept, else None."""
        with self._lock:
            hit = self._files.get((key, fmt))
            if hit is not None and hit.exists():
                self._files.move_to_end((key, fmt))
                return str(hit)
        return None

    def copy_in(self, key: Any, fmt: str, source: str | os.PathLike[str]) -> str:
        """The file of ``key`` in ``fmt``, taken from the encoded file ``source`` (linked when
        on the same file system, else copied) when the key is new."""
        hit = self.get(key, fmt)
        if hit is not None:
            return hit
        fd, tmp = tempfile.mkstemp(dir=self._folder(), suffix=FORMATS[fmt])
        os.close(fd)
        try:
            os.unlink(tmp)
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
        return self._keep(key, fmt, Path(tmp))

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()


def encode(picture: np.ndarray, fmt: str) -> bytes:
    """``picture`` (RGB or gray uint8) as JPEG (quality :data:`JPEG_QUALITY`) or PNG bytes."""
    import cv2

    if fmt not in FORMATS:
        raise ValueError(f"unknown picture format {fmt!r}")
    arr = np.ascontiguousarray(picture, dtype=np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[..., ::-1]  # OpenCV writes BGR
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if fmt == "jpeg" else \
        [cv2.IMWRITE_PNG_COMPRESSION, 1]
    ok, buf = cv2.imencode(FORMATS[fmt], arr, params)
    if not ok:
        raise ValueError(f"could not encode a {arr.shape} picture as {fmt}")
    return buf.tobytes()
