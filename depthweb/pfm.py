"""Portable Float Map (PFM) files: the format of Middlebury and Scene Flow ground truth.

Layout: a ``PF`` (3 channels) or ``Pf`` (1 channel) line, a ``WIDTH HEIGHT`` line, a scale line
whose sign gives the byte order (negative = little-endian, positive = big-endian), then float32
samples with the rows stored **bottom-up**. :func:`read_pfm` returns rows top-down.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from depthweb.errors import InputError

_HEADER = re.compile(rb"^(P[Ff])\s+(\d+)\s+(\d+)\s+([-+0-9.eE]+)\s", re.DOTALL)


def _parse_header(data: bytes, name: str) -> tuple[int, int, int, str, int]:
    """(channels, width, height, numpy byte order, offset of the first sample)."""
    m = _HEADER.match(data[:256])
    if m is None:
        raise InputError(f"{name} is not a PFM file: it has no 'PF'/'Pf' header.")
    channels = 3 if m.group(1) == b"PF" else 1
    width, height = int(m.group(2)), int(m.group(3))
    try:
        scale = float(m.group(4))
    except ValueError:
        raise InputError(f"{name} has an unreadable PFM scale {m.group(4)!r}.") from None
    if scale == 0 or width <= 0 or height <= 0:
        raise InputError(f"{name} has an invalid PFM header ({width}x{height}, scale {scale}).")
    return channels, width, height, "<" if scale < 0 else ">", m.end()


def read_pfm(path: str | Path) -> np.ndarray:
    """Read a PFM file.

    Returns float32 (H, W) for ``Pf`` files and (H, W, 3) for ``PF`` files, top row first, in
    native byte order. Values are returned as stored (``inf`` stays ``inf``).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path.name} cannot be read: {exc.strerror or exc}.") from None
    channels, width, height, order, offset = _parse_header(data, path.name)
    count = width * height * channels
    if len(data) - offset < 4 * count:
        raise InputError(
            f"{path.name} is truncated: its header says {width}x{height}x{channels} floats "
            f"but only {(len(data) - offset) // 4} are present."
        )
    arr = np.frombuffer(data, dtype=np.dtype(order + "f4"), count=count, offset=offset)
    shape = (height, width) if channels == 1 else (height, width, 3)
    return np.ascontiguousarray(arr.reshape(shape)[::-1]).astype(np.float32, copy=False)


def write_pfm(path: str | Path, array: np.ndarray, *, little_endian: bool = True) -> None:
    """Write float32 (H, W) or (H, W, 3) ``array`` as PFM (rows bottom-up, scale magnitude 1)."""
    arr = np.asarray(array, dtype=np.float32)
    if arr.ndim == 2:
        tag = b"Pf"
    elif arr.ndim == 3 and arr.shape[2] == 3:
        tag = b"PF"
    else:
        raise ValueError(f"PFM stores (H, W) or (H, W, 3) arrays, got shape {arr.shape}")
    height, width = arr.shape[:2]
    order = "<" if little_endian else ">"
    scale = b"-1.0" if little_endian else b"1.0"
    body = np.ascontiguousarray(arr[::-1]).astype(np.dtype(order + "f4"), copy=False).tobytes()
    header = tag + b"\n" + f"{width} {height}".encode() + b"\n" + scale + b"\n"
    Path(path).write_bytes(header + body)
