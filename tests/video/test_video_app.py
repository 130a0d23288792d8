"""The ``/video`` endpoint through gradio_client against a launched Studio, with bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from depthweb.config import Settings
from depthweb.services.video_io import decode_video
from tests.app.studio_server import RELATIVE_MODEL
from tests.video.clips import PHOTO, phone_clip


def call_video(client, path: Path, **kwargs):
    return client.predict(video=handle_file(str(path)), model=RELATIVE_MODEL,
                          api_name="/video", **kwargs)


@pytest.fixture(scope="module")
def phone(tmp_path_factory):
    return phone_clip(tmp_path_factory.mktemp("clips") / "IMG_0002.mov", frames=8)


def test_video_endpoint_is_named_with_client_friendly_parameters(client):
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    params = [p["parameter_name"] for p in api["/video"]["parameters"]]
    assert params == ["video", "model", "max_frames", "stride", "max_side", "cloud_frame"]


def test_phone_clip_through_the_endpoint(client, phone):
    webm, npz, sidecar, ply, info = call_video(client, phone, cloud_frame=1)
    meta = json.loads(Path(sidecar).read_text())
    depth = np.load(npz)["depth"]
    assert info["frame_count"] == meta["frame_count"] == len(depth) >= 8
    assert depth.dtype == np.float16 and depth.shape[1:] == (320, 192)
    assert meta["source"]["rotation"] == -90 and meta["source"]["variable_frame_rate"]
    clip = decode_video(webm, settings=Settings())
    assert len(clip) == len(depth) and clip.frames.shape[2] == 2 * 192
    assert Path(ply).read_bytes().startswith(b"ply")
    _, _, _, no_ply, _ = call_video(client, phone, max_frames=2, max_side=96)
    assert no_ply is None


@pytest.mark.parametrize("make, kwargs, words", [
    (lambda d: d / "notes.mp4", {}, "is not a video file"),
    (lambda d: PHOTO, {}, "still image"),
    (None, {"max_frames": 100_000}, "At most"),
])
def test_bad_input_gets_one_sentence_and_the_app_keeps_serving(client, phone, tmp_path, make,
                                                               kwargs, words):
    path = phone
    if make is not None:
        path = make(tmp_path)
        if not path.exists():
            path.write_text("not a video")
    with pytest.raises(AppError) as err:
        call_video(client, path, **kwargs)
    assert words in str(err.value)
    assert call_video(client, phone, max_frames=2, max_side=64)[4]["frame_count"] == 2
