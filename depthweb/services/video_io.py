"""Video files in and out with PyAV (its wheels carry their own FFmpeg; no ``ffmpeg`` binary).

:func:`decode_video` reads a clip into RGB frames at a constant frame rate: frames are picked by
their **timestamps** (nearest to a regular grid at the stream's average rate divided by
``stride``), so variable-frame-rate phone clips come out evenly spaced instead of refused;
rotation metadata (the display matrix of phone videos) is applied; frames are downscaled so their
longer side is at most ``max_side``. Limits come from the settings (``video_max_*``): a clip over
them, a file that is not a video (a still image, text, audio only), a truncated file or one with
zero frames is refused with one :class:`~depthweb.errors.InputError` sentence.

:func:`encode_webm` writes frames as VP9 in WebM (encoded by PyAV's own libvpx; Chromium and
Firefox play it) into memory, so the caller can write the file atomically.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from depthweb.config import Settings, get_settings
from depthweb.errors import InputError
from depthweb.imaging import check_dimensions, display_name

log = logging.getLogger(__name__)

STILL_IMAGE_FORMATS = ("image2", "_pipe", "apng", "webp", "tiff")
"""FFmpeg demuxers for still images: such files are refused as "not a video"."""
_IMAGE_MAGIC = (b"\xff\xd8", b"\x89PNG", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")
_MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip")


def sniff_container(head: bytes) -> str | None:
    """The FFmpeg demuxer for a file starting with ``head`` (at least 12 bytes): ``mov`` (MP4,
    MOV, 3GP), ``matroska`` (MKV, WebM) or ``avi``; ``None`` for anything else. Only these
    are opened, so playlists and scripts (HLS, concat) that make FFmpeg read other files or
    URLs are never parsed."""
    if head[4:8] in _MP4_BOXES:
        return "mov"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "avi"
    return None


@dataclass
class DecodedVideo:
    """``frames`` (T, H, W, 3) uint8 RGB at the processing size, evenly spaced at ``fps``;
    ``times`` (T,) seconds of each picked source frame; ``source``: what the file said."""

    frames: np.ndarray
    fps: float
    times: np.ndarray
    source: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.frames.shape[0])


def _target_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(w, h) with the longer side at most ``max_side``, both even (the encoders need it)."""
    scale = min(1.0, max_side / max(width, height))
    w, h = max(2, round(width * scale)), max(2, round(height * scale))
    return w - w % 2, h - h % 2


def _open(path: Path, label: str):
    import av

    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise InputError(f"{label} could not be read ({exc.strerror or exc}).") from exc
    fmt = sniff_container(head)
    if fmt is None:
        what = "a still image, not a video" if head.startswith(_IMAGE_MAGIC) else (
            "not a video file that can be read")
        raise InputError(f"{label} is {what}; use an MP4, MOV or WebM clip.")
    try:
        container = av.open(str(path), "r", format=fmt)
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{label} is not a video file that can be read (or it is truncated); "
                         "use an MP4, MOV or WebM clip.") from exc
    fmt = container.format.name or ""
    if not container.streams.video or any(f in fmt for f in STILL_IMAGE_FORMATS):
        what = ("a still image, not a video" if container.streams.video
                else "not a video with frames (it has no video track)")
        container.close()
        raise InputError(f"{label} is {what}; use an MP4, MOV or WebM clip.")
    return container


def _stream_facts(stream, container, label: str, settings: Settings) -> dict:
    """Codec, size, rate and duration from the headers; refuses sizes and lengths over caps."""
    ctx = stream.codec_context
    width, height = int(ctx.width or 0), int(ctx.height or 0)
    if max(width, height) > settings.video_max_source_side:
        raise InputError(f"{label} is {width}x{height} pixels; videos larger than "
                         f"{settings.video_max_source_side} pixels on a side are refused: "
                         "resize it first.")
    check_dimensions(width, height, label, settings.max_pixels)
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    duration = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1_000_000
    if duration is not None and duration > settings.video_max_seconds:
        raise InputError(f"{label} lasts {duration:.0f} s; clips longer than "
                         f"{settings.video_max_seconds:g} s are refused: trim it first.")
    return {"codec": ctx.name, "width": width, "height": height,
            "source_fps": round(fps, 4) if fps > 0 else None,
            "duration_s": None if duration is None else round(duration, 4),
            "container": container.format.name}


def _frame_limit(label: str, facts: dict, stride: int, max_frames: int | None,
                 settings: Settings) -> int:
    cap = settings.video_max_frames
    if max_frames is not None:
        if max_frames > cap:
            raise InputError(f"At most {cap} frames can be processed per clip; "
                             f"{max_frames} were asked for.")
        return max_frames
    fps, duration = facts["source_fps"], facts["duration_s"]
    if fps and duration:
        expected = int(duration * fps / stride + 0.5)
        if expected > cap:
            raise InputError(f"{label} has about {expected} frames at stride {stride}, more "
                             f"than the limit of {cap}; use a larger stride or fewer frames.")
    return cap


def _rgb(frame, size: tuple[int, int]) -> np.ndarray:
    """The frame as (H, W, 3) uint8 at ``size`` (w, h) of the *displayed* picture."""
    rot = round((frame.rotation or 0) / 90.0) % 4
    w, h = size if rot % 2 == 0 else size[::-1]
    rgb = frame.to_ndarray(width=w, height=h, format="rgb24", interpolation="AREA")
    return np.ascontiguousarray(np.rot90(rgb, k=rot)) if rot else rgb


def decode_video(
    path: str | Path,
    *,
    max_frames: int | None = None,
    stride: int = 1,
    max_side: int | None = None,
    settings: Settings | None = None,
) -> DecodedVideo:
    """Decode ``path`` into evenly spaced RGB frames (see the module docstring)."""
    settings = settings or get_settings()
    path = Path(path)
    label = display_name(path.name)
    if stride < 1 or (max_frames is not None and max_frames < 1):
        raise InputError("stride and max_frames must be at least 1.")
    side = min(max_side or settings.video_max_side, settings.video_max_side)
    container = _open(path, label)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        facts = _stream_facts(stream, container, label, settings)
        limit = _frame_limit(label, facts, stride, max_frames, settings)
        picked, times, rotation, decoded = _pick_frames(
            container, stream, facts, stride, limit, max_frames is None, side, label)
    finally:
        container.close()
    if not picked:
        raise InputError(f"{label} has no video frames that can be decoded.")
    interval = stride / facts["source_fps"] if facts["source_fps"] else 1.0 / 30.0
    facts.update(rotation=rotation, decoded_frames=decoded, stride=stride)
    return DecodedVideo(np.stack(picked), 1.0 / interval, np.asarray(times), facts)


def _pick_frames(container, stream, facts: dict, stride: int, limit: int, strict: bool,
                 side: int, label: str) -> tuple[list[np.ndarray], list[float], int, int]:
    """Decode and keep the frame nearest to each grid time ``t0 + k * stride / fps``."""
    import av

    fps = facts["source_fps"] or 30.0
    step = stride / fps
    size = None
    picked: list[np.ndarray] = []
    times: list[float] = []
    stamps: list[float] = []
    prev = None  # (time, frame)
    t0 = None
    rotation = 0
    try:
        for frame in container.decode(stream):
            t = float(frame.time) if frame.time is not None else len(stamps) / fps
            stamps.append(t)
            if size is None:
                rotation = int(frame.rotation or 0)
                w, h = (frame.width, frame.height) if rotation % 180 == 0 else (
                    frame.height, frame.width)
                size, t0 = _target_size(w, h, side), t
            while (grid := t0 + len(picked) * step) <= t and len(picked) <= limit:
                use = prev if prev is not None and grid - prev[0] < t - grid else (t, frame)
                picked.append(_rgb(use[1], size))
                times.append(use[0])
            prev = (t, frame)
            if len(picked) > limit:
                break
        # the last frame also serves grid times up to half a source frame after it
        while prev is not None and t0 + len(picked) * step <= prev[0] + 0.5 / fps and (
                len(picked) <= limit):
            picked.append(_rgb(prev[1], size))
            times.append(prev[0])
    except (av.FFmpegError, EOFError) as exc:
        raise InputError(f"{label} is truncated or corrupt: its video could not be decoded "
                         "to the end.") from exc
    if len(picked) > limit:
        if strict:
            raise InputError(f"{label} has more than {limit} frames at stride {stride}; use a "
                             "larger stride or fewer frames.")
        picked, times = picked[:limit], times[:limit]
    _check_complete(stream, facts, stamps, label, len(picked) >= limit)
    facts["variable_frame_rate"] = _is_variable(stamps)
    return picked, times, rotation, len(stamps)


def _check_complete(stream, facts: dict, stamps: list[float], label: str,
                    stopped_early: bool) -> None:
    """A file whose header promises many more frames (or seconds) than could be decoded is
    truncated."""
    if stopped_early or not stamps:
        return
    expected = int(stream.frames or 0)
    duration, fps = facts["duration_s"], facts["source_fps"] or 30.0
    short = expected > 0 and len(stamps) < 0.9 * expected - 1
    if duration and not short:
        short = stamps[-1] - stamps[0] < 0.9 * duration - 2.0 / fps
    if short:
        raise InputError(f"{label} is truncated: only {stamps[-1] - stamps[0] + 1 / fps:.2f} s "
                         f"of its {duration or expected / fps:.2f} s could be decoded.")


def _is_variable(stamps: list[float]) -> bool:
    if len(stamps) < 3:
        return False
    gaps = np.diff(np.asarray(stamps))
    med = float(np.median(gaps))
    return bool(med > 0 and (gaps.max() - gaps.min()) > 0.1 * med)


def encode_webm(frames: np.ndarray, fps: float, *, crf: int = 32) -> bytes:
    """VP9/WebM bytes of ``frames`` (T, H, W, 3) uint8 RGB (even H and W) at ``fps``."""
    import av

    buf = io.BytesIO()
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(buf, "w", format="webm") as out:
        stream = out.add_stream("libvpx-vp9", rate=rate)
        stream.width, stream.height = int(frames.shape[2]), int(frames.shape[1])
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "b": "0", "deadline": "realtime",
                          "cpu-used": "8", "row-mt": "1"}
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buf.getvalue()


def even_pad(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) padded with black to even H and W (4:2:0 video needs them)."""
    h, w = rgb.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return rgb
    return np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)))
