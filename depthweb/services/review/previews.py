"""Display-size review pictures made once per content and kept on disk (``<data_dir>/previews``).

A new review page shows the photo and the teacher's depth at display size. Making them from the
stored files means decoding a full-size photo and reading a full-size float32 prediction (27 MB
for a 3024x2268 photo), shrinking, colourising and encoding: about 100-150 ms per new task on
this project's 2-core machine, paid on the reviewer's click. Pseudo-labelling already holds the
decoded photo and the prediction in memory, so it writes these previews next to the blobs
(:func:`warm`); a page then reads two small files. A page whose previews are missing (older
data, a Ray run, a deleted folder) makes them once and keeps them for every later reviewer.

Previews are derived data keyed by content (the photo's sha256 and the label grid; the
prediction's sha256 and kind), so a file never goes stale and the folder is safe to delete.
Files are written atomically; one that cannot be decoded is made again.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from depthweb.services import visuals
from depthweb.services.review.picture_files import FORMATS, encode
from depthweb.types import DepthKind, DepthResult, Intrinsics

log = logging.getLogger(__name__)

PREVIEW_DIRNAME = "previews"
DISPLAY_MAX_SIDE = 1024  # the photo (shown beside the depth pictures and in the brush editor)
PREVIEW_MAX_SIDE = 640  # depth pictures (shown 360 px high)


def small(arr: np.ndarray, shape: tuple[int, int], side: int = DISPLAY_MAX_SIDE) -> np.ndarray:
    """An (H, W) array shrunk (nearest) so its longer side is at most ``side``."""
    import cv2

    h, w = shape
    s = max(h, w) / float(side)
    if s <= 1:
        return arr
    size = (max(1, round(w / s)), max(1, round(h / s)))
    return cv2.resize(arr, size, interpolation=cv2.INTER_NEAREST)


def display_shape(shape: tuple[int, int], side: int = DISPLAY_MAX_SIDE) -> tuple[int, int]:
    """(h, w) of an (H, W) label grid shrunk by :func:`small`."""
    h, w = shape
    s = max(h, w) / float(side)
    return (h, w) if s <= 1 else (max(1, round(h / s)), max(1, round(w / s)))


def photo_picture(rgb: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The photo (any size, e.g. a reduced decode) at display size on the label grid ``shape``."""
    import cv2

    out = visuals.downscale(rgb, DISPLAY_MAX_SIDE)
    target = display_shape(shape)
    if out.shape[:2] != target:
        out = cv2.resize(out, (target[1], target[0]), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(out, dtype=np.uint8)


def teacher_picture(depth: np.ndarray, kind: DepthKind | str, intrinsics: Intrinsics,
                    model: str) -> np.ndarray:
    """The teacher prediction (H, W) coloured at preview size."""
    shrunk = small(depth, depth.shape, PREVIEW_MAX_SIDE).astype(np.float32, copy=False)
    return visuals.depth_preview(DepthResult(shrunk, DepthKind(kind), intrinsics, model=model))


def photo_name(image_sha256: str, shape: tuple[int, int]) -> str:
    return f"photo-{image_sha256}-{int(shape[0])}x{int(shape[1])}"


def teacher_name(depth_sha256: str, kind: DepthKind | str) -> str:
    return f"teacher-{depth_sha256}-{DepthKind(kind).value}"


@dataclass(frozen=True)
class Preview:
    """A picture (RGB uint8) and its encoded file."""

    picture: np.ndarray
    path: Path | None  # None: not kept on disk


class PreviewFiles:
    """The previews folder: :meth:`read` a picture by name, :meth:`write` one atomically."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path(self, name: str, fmt: str) -> Path:
        return self.root / name[:12] / f"{name}{FORMATS[fmt]}"

    def read(self, name: str, fmt: str) -> Preview | None:
        """The stored preview, or None when it is missing or cannot be decoded."""
        import cv2

        path = self.path(name, fmt)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            log.warning("preview %s cannot be decoded; making it again", path.name)
            return None
        return Preview(np.ascontiguousarray(bgr[..., ::-1]), path)

    def write(self, name: str, fmt: str, picture: np.ndarray) -> Preview:
        """Encode and store ``picture`` under ``name`` (the file appears whole or not at all)."""
        path = self.path(name, fmt)
        data = encode(picture, fmt)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return Preview(picture, path)

    def has(self, name: str, fmt: str) -> bool:
        return self.path(name, fmt).is_file()


def warm_photo(previews: PreviewFiles, image_sha256: str, shape: tuple[int, int],
               rgb: Callable[[], np.ndarray]) -> bool:
    """Write the photo preview of an image on the label grid ``shape`` unless it is there;
    ``rgb`` gives the decoded photo (any size), called only when needed. True: written."""
    name = photo_name(image_sha256, shape)
    if previews.has(name, "jpeg"):
        return False
    previews.write(name, "jpeg", photo_picture(rgb(), shape))
    return True


def warm_teacher(previews: PreviewFiles, depth_sha256: str, kind: DepthKind | str,
                 depth: Callable[[], np.ndarray], intrinsics: Intrinsics, model: str) -> bool:
    """Write the teacher preview (PNG and JPEG) of a prediction unless both are there;
    ``depth`` gives the prediction (H, W), called only when needed. True: written."""
    name = teacher_name(depth_sha256, kind)
    if previews.has(name, "jpeg") and previews.has(name, "png"):
        return False
    pic = teacher_picture(depth(), kind, intrinsics, model)
    previews.write(name, "jpeg", pic)
    previews.write(name, "png", pic)
    return True


def with_photo_preview(decoded: tuple[np.ndarray, Intrinsics]
                       ) -> tuple[np.ndarray, Intrinsics, np.ndarray]:
    """A decoded (photo, intrinsics) plus the photo at display size, to keep until the
    previews are written instead of the full-size photo."""
    rgb, cam = decoded
    return rgb, cam, visuals.downscale(rgb, DISPLAY_MAX_SIDE)
