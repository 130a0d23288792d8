"""Decoding phone-style clips with PyAV: HEVC .mov, rotation, variable frame rate, caps, and
one-sentence refusals for files that are not usable videos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from depthweb.config import Settings
from depthweb.errors import InputError
from depthweb.services.video_io import decode_video, encode_webm
from tests.video.clips import PHOTO, moving_crops, phone_clip, write_clip


def marker_frames(frames: int = 6, size=(64, 48)) -> np.ndarray:
    """Grey frames with a white block in the top-left corner (to check rotations)."""
    out = np.full((frames, size[1], size[0], 3), 60, np.uint8)
    out[:, :12, :12] = 255
    return out


def corner_brightness(rgb: np.ndarray) -> dict[str, float]:
    h, w = rgb.shape[:2]
    s = 8
    return {"tl": rgb[:s, :s].mean(), "tr": rgb[:s, w - s:].mean(),
            "bl": rgb[h - s:, :s].mean(), "br": rgb[h - s:, w - s:].mean()}


@pytest.mark.parametrize("rotation, corner", [(0, "tl"), (-90, "tr"), (90, "bl"),
                                              (180, "br")])
def test_rotation_metadata_is_honoured(tmp_path, rotation, corner):
    path = tmp_path / f"rot{rotation}.mov"
    write_clip(path, marker_frames(), codec="libx264", rotation=rotation)
    clip = decode_video(path, settings=Settings())
    expected = (48, 64) if rotation in (0, 180) else (64, 48)
    assert clip.frames.shape[1:3] == expected
    bright = corner_brightness(clip.frames[0])
    assert max(bright, key=bright.get) == corner
    assert clip.source["rotation"] % 360 == rotation % 360


def test_hevc_mov_with_variable_frame_rate_is_resampled_by_timestamps(tmp_path):
    frames = moving_crops(frames=20, size=(160, 96))
    written = write_clip(tmp_path / "vfr.mov", frames, codec="libx265", fps=30.0, vfr=True,
                         seed=3)
    times = [round(t * 600) / 600 for t in written]  # as stored: 1/600 s ticks
    clip = decode_video(tmp_path / "vfr.mov", settings=Settings())
    assert clip.source["codec"] == "hevc" and clip.source["variable_frame_rate"]
    grid = clip.times[0] + np.arange(len(clip)) / clip.fps
    assert len(clip) == pytest.approx((times[-1] - times[0]) * clip.fps + 1, abs=1.01)
    # every output frame is the source frame nearest to its grid time
    nearest = [min(times, key=lambda t, g=g: abs(t - g)) for g in grid]
    np.testing.assert_allclose(clip.times, nearest, atol=2e-3)
    assert np.allclose(np.diff(grid), 1 / clip.fps)


def test_constant_rate_clip_keeps_every_frame_and_stride_divides_the_rate(tmp_path):
    path = phone_clip(tmp_path / "cfr.mov", frames=12, rotation=0, vfr=False)
    full = decode_video(path, settings=Settings())
    assert len(full) == 12 and full.fps == pytest.approx(30.0)
    every3 = decode_video(path, stride=3, settings=Settings())
    assert len(every3) == 4 and every3.fps == pytest.approx(10.0)
    np.testing.assert_array_equal(every3.frames, full.frames[::3])
    assert len(decode_video(path, max_frames=5, settings=Settings())) == 5


def test_frames_are_downscaled_to_max_side(tmp_path):
    path = phone_clip(tmp_path / "big.mov", frames=3, rotation=0, vfr=False)
    clip = decode_video(path, max_side=100, settings=Settings())
    assert max(clip.frames.shape[1:3]) <= 100 and clip.frames.shape[2] % 2 == 0
    capped = decode_video(path, max_side=10_000, settings=Settings(video_max_side=64))
    assert max(capped.frames.shape[1:3]) <= 64


def test_webm_round_trip(tmp_path):
    frames = moving_crops(frames=5, size=(96, 64))
    path = tmp_path / "x.webm"
    path.write_bytes(encode_webm(frames, 8.0, crf=10))
    clip = decode_video(path, settings=Settings())
    assert clip.source["codec"] == "vp9" and len(clip) == 5 and clip.fps == pytest.approx(8.0)
    assert np.abs(clip.frames.astype(int) - frames).mean() < 12


def truncated(tmp_path: Path) -> Path:
    path = tmp_path / "cut.webm"
    data = encode_webm(moving_crops(frames=24, size=(96, 64)), 12.0, crf=10)
    path.write_bytes(data[: len(data) // 4])
    return path


def empty_mp4(tmp_path: Path) -> Path:
    import av

    path = tmp_path / "empty.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height = 64, 48
        stream.pix_fmt = "yuv420p"
        out.start_encoding()  # a header, zero frames
    return path


def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n")
    return path


def photo(tmp_path: Path) -> Path:
    return PHOTO


def hls_playlist(tmp_path: Path) -> Path:
    """An HLS playlist named .mp4: FFmpeg would read the file it points to."""
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    path = tmp_path / "playlist.mp4"
    path.write_text(f"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:1.0,\nfile://{secret}\n"
                    "#EXT-X-ENDLIST\n")
    return path


@pytest.mark.parametrize("make, words", [
    (text_file, "not a video file"), (photo, "still image"), (truncated, "truncated"),
    (empty_mp4, "no video track"), (hls_playlist, "not a video file"),
])
def test_bad_files_get_one_sentence(tmp_path, make, words):
    with pytest.raises(InputError) as err:
        decode_video(make(tmp_path), settings=Settings())
    msg = str(err.value)
    assert words in msg and msg.endswith(".") and "\n" not in msg


@pytest.mark.parametrize("settings, kwargs, words", [
    (Settings(video_max_frames=5), {}, "more than the limit of 5"),
    (Settings(video_max_frames=5), {"max_frames": 6}, "At most 5 frames"),
    (Settings(video_max_seconds=0.2), {}, "longer than 0.2 s"),
    (Settings(video_max_source_side=100), {}, "larger than 100 pixels"),
])
def test_clips_over_the_caps_are_refused(tmp_path, settings, kwargs, words):
    path = phone_clip(tmp_path / "long.mov", frames=12, rotation=0, vfr=False)
    with pytest.raises(InputError, match=words):
        decode_video(path, settings=settings, **kwargs)
    assert len(decode_video(path, stride=3, settings=Settings(video_max_frames=5))) == 4
