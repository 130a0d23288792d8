"""The corpus through the Studio's API endpoints (``/predict``, ``/compare``, ``/stereo``) of a
launched app, with gradio_client: each bad request gets an ``AppError`` whose message is the
one sentence (the app launches with ``show_error=False``, so anything unexpected would arrive as
a generic message and fail here), and the next good request still works."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.badinput.conftest import RELATIVE, STUDENT
from tests.badinput.corpus import H, Handled, Refused, W, cases
from tests.badinput.harness import assert_sentence

pytestmark = pytest.mark.slow


def _call(client, api: str, **kwargs):
    import httpx
    from gradio_client.exceptions import AppError

    try:
        return client.predict(api_name=api, **kwargs), None
    except AppError as err:
        return None, err
    except httpx.HTTPStatusError as err:  # refused where it joins the queue (size caps)
        if err.response.status_code != 400:
            raise
        return None, err.response.json().get("detail", err.response.text)


def _refused(expect, err, name: str | None = None) -> None:
    assert isinstance(expect, Refused), f"expected it handled, got {err}"
    assert_sentence(str(err), expect.needle, name=name)


def still_serving(web, good_photo) -> None:
    """A good ``/predict`` right after the bad request succeeds (outputs left on the server)."""
    from gradio_client import handle_file

    *_, info = web.studio(download=False).predict(image=handle_file(str(good_photo)),
                                                 model=STUDENT, api_name="/predict")
    assert (info["height"], info["width"]) == (H, W) and info["model"] == STUDENT


@pytest.mark.parametrize("case", cases(("image", "filename"), "web"), ids=repr)
def test_predict(case, tmp_path, web, good_photo):
    from gradio_client import handle_file

    path = case.build(tmp_path)
    out, err = _call(web.studio(download=False), "/predict", image=handle_file(str(path)),
                     model=STUDENT)
    expect = case.outcome("web")
    if err is not None:
        _refused(expect, err, name=path.name)
    else:
        assert isinstance(expect, Handled), f"{case.id} should be refused"
        info = out[-1]
        assert (info["height"], info["width"]) == expect.shape
        assert 0 < info["valid_fraction"] <= 1
    still_serving(web, good_photo)


def test_predict_files_have_the_rotated_shape(tmp_path, web):
    """The downloads themselves (not just the info) of an EXIF-rotated photo."""
    from gradio_client import handle_file

    case = next(c for c in cases("image", "web") if c.id == "exif-rotated")
    npy, _, sidecar, *_ = web.studio().predict(image=handle_file(str(case.build(tmp_path))),
                                              model=STUDENT, api_name="/predict")
    assert np.load(npy).shape == case.expect.shape
    assert json.loads(Path(sidecar).read_text())["width"] == case.expect.shape[1]


COMPARED = ("zero-bytes", "text-as-jpg", "svg", "header-bomb-png", "aspect-20000x1",
            "exif-rotated", "one-pixel")


@pytest.mark.parametrize("case", [c for c in cases(("image", "filename"), "web")
                                  if c.id in COMPARED], ids=repr)
def test_compare(case, tmp_path, web, good_photo):
    """/compare decodes like /predict (the same service): a representative sample."""
    from gradio_client import handle_file

    path = case.build(tmp_path)
    out, err = _call(web.studio(download=False), "/compare", image=handle_file(str(path)),
                     models=[STUDENT, RELATIVE], reference="")
    expect = case.outcome("compare", "web")
    if err is not None:  # a file the decoder refuses is named; a 1x1 photo cannot be compared
        _refused(expect, err, name=path.name if isinstance(case.expect, Refused) else None)
    else:
        assert isinstance(expect, Handled)
        _, _, summary, depths = out
        assert summary["reference"] == STUDENT and len(depths) == 2
        assert [m["model"] for m in summary["models"]] == [STUDENT, RELATIVE]
    still_serving(web, good_photo)


@pytest.mark.parametrize("case", cases(("stereo", "calib"), "web"), ids=repr)
def test_stereo(case, tmp_path, web, good_photo):
    from gradio_client import handle_file

    inputs = case.build(tmp_path)
    out, err = _call(web.studio(download=False), "/stereo", left=handle_file(str(inputs["left"])),
                     right=handle_file(str(inputs["right"])),
                     calib=handle_file(str(inputs["calib"])), focal_px=0, baseline_m=0,
                     doffs=0, mono_model="")
    expect = case.outcome("web")
    if err is not None:
        _refused(expect, err)
    else:
        assert isinstance(expect, Handled), f"{case.id} should be refused"
        info = out[-1]
        assert (info["height"], info["width"]) == expect.shape
        assert info["calibration"]["source"] == "calib.txt"
    still_serving(web, good_photo)


@pytest.mark.parametrize("numbers,needle", [
    ({"focal_px": -5, "baseline_m": 0.1}, "focal length must be a positive"),
    ({"focal_px": 500, "baseline_m": -0.1}, "baseline must be a positive"),
    ({"focal_px": 0, "baseline_m": 0}, "Upload a calib.txt"),
])
def test_stereo_numbers(numbers, needle, tmp_path, web, good_photo):
    from gradio_client import handle_file

    pair = next(c for c in cases("stereo", "web") if c.id == "stereo-gray-and-rgb")
    inputs = pair.build(tmp_path)
    _, err = _call(web.studio(download=False), "/stereo", left=handle_file(str(inputs["left"])),
                   right=handle_file(str(inputs["right"])), calib=None, doffs=0,
                   mono_model="", **numbers)
    assert err is not None
    assert_sentence(str(err), needle)
    still_serving(web, good_photo)


@pytest.mark.parametrize("case", cases("anchors", "web"), ids=repr)
def test_predict_anchors(case, tmp_path, web, good_photo):
    from gradio_client import handle_file

    out, err = _call(web.studio(), "/predict", image=handle_file(str(good_photo)), model=STUDENT,
                     anchors=case.build(tmp_path))
    expect = case.outcome("web")
    if err is not None:
        _refused(expect, err)
    else:
        assert isinstance(expect, Handled), f"{case.id} should be refused"
        depth = np.load(out[0])
        assert out[-1]["kind"] == "metric_depth" and abs(float(depth[30, 20]) - 2.5) < 1e-3
    still_serving(web, good_photo)
