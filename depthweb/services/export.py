"""Raw exports that never truncate: float32 ``.npy``, 16-bit PNG + JSON sidecar, a colour preview.

For each stem: ``<stem>.npy`` (float32 HxW, NaN = invalid), ``<stem>.png`` (uint16,
``value = round((x - png_offset) / png_scale)``, 0 = invalid; ``png_offset`` is 0 unless a
relative map has values <= 0), ``<stem>_color.png`` and ``<stem>.json``. Everything is encoded in
memory first, then the whole set is written with :func:`depthweb.fsutil.atomic_write_files`
(temporary siblings, fsync, then all renamed into place): a failed input (an encoding error, a
full disk, a file name too long for the file system) leaves nothing half-written.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from depthweb.fsutil import atomic_write_files
from depthweb.types import DepthResult

PNG_MAX = 65535
METRIC_PNG_SCALE = 0.001  # millimetres, the NYU convention, while the range fits


def png16_encoding(depth: np.ndarray, metric: bool) -> tuple[np.ndarray, float, float]:
    """(uint16 image, png_scale, png_offset) for a float map; invalid (NaN/inf) -> 0.

    Metric depth uses millimetres when the maximum fits (<= 65.5 m), else the finest scale
    that fits. Relative maps use the full 1..65535 range.
    """
    valid = np.isfinite(depth)
    if metric:
        valid &= depth > 0
    if not valid.any():
        return np.zeros(depth.shape, np.uint16), 1.0, 0.0
    vals = depth[valid].astype(np.float64)
    lo, hi = float(vals.min()), float(vals.max())
    if metric:
        offset, scale = 0.0, max(METRIC_PNG_SCALE, hi / PNG_MAX)
    elif lo > 0:
        offset, scale = 0.0, max(hi / PNG_MAX, 1e-12)
    else:  # lo -> 1, hi -> 65535
        scale = max((hi - lo) / (PNG_MAX - 1), 1e-12)
        offset = lo - scale
    q = np.zeros(depth.shape, np.uint16)
    q[valid] = np.clip(np.rint((vals - offset) / scale), 1, PNG_MAX).astype(np.uint16)
    return q, float(scale), float(offset)


def _png_bytes(image: np.ndarray) -> bytes:
    import cv2

    arr = image if image.ndim == 2 else np.ascontiguousarray(image[..., ::-1])  # RGB -> BGR
    ok, buf = cv2.imencode(".png", arr)
    if not ok:
        raise OSError("PNG encoding failed")
    return buf.tobytes()


def npy_bytes(arr: np.ndarray) -> bytes:
    bio = io.BytesIO()
    np.save(bio, arr, allow_pickle=False)
    return bio.getvalue()


def encode_outputs(
    result: DepthResult, *, cmap: str = "turbo", extra: dict | None = None
) -> dict[str, bytes]:
    """Suffix -> file bytes for ``.npy``, ``.png``, ``_color.png`` and ``.json``."""
    from depthweb.geometry.colormap import colorize

    depth = np.where(result.valid_mask, result.depth, np.nan).astype(np.float32)
    q, scale, offset = png16_encoding(depth, result.kind.is_metric)
    meta = result.metadata()
    meta.update(png_scale=scale, png_offset=offset, png_invalid=0, npy_invalid="NaN")
    meta.update(extra or {})
    color = colorize(depth, cmap=cmap, invert=result.kind == "relative_disparity")
    return {
        ".npy": npy_bytes(depth),
        ".png": _png_bytes(q),
        "_color.png": _png_bytes(color),
        ".json": json.dumps(meta, indent=2).encode(),
    }


def write_outputs(
    result: DepthResult, out_dir: Path, stem: str, *, more: dict[str, bytes] | None = None,
    **kwargs,
) -> list[Path]:
    """Encode everything, then write the files all or nothing; returns the written paths.

    ``more``: extra suffix -> bytes written in the same set (e.g. ``_disparity.npy``).
    """
    blobs = {**encode_outputs(result, **kwargs), **(more or {})}
    files = {Path(out_dir) / f"{stem}{suffix}": data for suffix, data in blobs.items()}
    atomic_write_files(files)
    return list(files)


def decode_png16(png_path: Path, sidecar: dict) -> np.ndarray:
    """Read a 16-bit export back to float32 with NaN for invalid pixels."""
    import cv2

    q = cv2.imread(str(png_path), cv2.IMREAD_UNCHANGED)
    out = q.astype(np.float32) * sidecar["png_scale"] + sidecar.get("png_offset", 0.0)
    out[q == 0] = np.nan
    return out
