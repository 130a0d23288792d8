"""PFM read/write: row order, byte order, channels, malformed files."""

from __future__ import annotations

import numpy as np
import pytest

from depthweb.errors import InputError
from depthweb.pfm import read_pfm, write_pfm


@pytest.mark.parametrize("little_endian", [True, False])
@pytest.mark.parametrize("shape", [(5, 7), (4, 3, 3)])
def test_round_trip(tmp_path, little_endian, shape):
    arr = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    arr.flat[3] = np.inf
    path = tmp_path / "x.pfm"
    write_pfm(path, arr, little_endian=little_endian)
    back = read_pfm(path)
    assert back.dtype == np.float32 and back.shape == shape
    np.testing.assert_array_equal(back, arr)


def test_rows_bottom_up_and_scale_sign(tmp_path):
    arr = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    path = tmp_path / "x.pfm"
    write_pfm(path, arr, little_endian=False)
    data = path.read_bytes()
    assert data.startswith(b"Pf\n2 2\n1.0\n")  # positive scale = big-endian
    body = np.frombuffer(data[len(b"Pf\n2 2\n1.0\n") :], ">f4")
    assert body.tolist() == [3.0, 4.0, 1.0, 2.0]  # bottom row stored first


def test_hand_written_little_endian(tmp_path):
    path = tmp_path / "x.pfm"
    body = np.array([[5.0, 6.0, 7.0], [1.0, 2.0, 3.0]], "<f4")  # stored bottom-up
    path.write_bytes(b"Pf\n3 2\n-0.003922\n" + body.tobytes())
    assert read_pfm(path).tolist() == [[1.0, 2.0, 3.0], [5.0, 6.0, 7.0]]


@pytest.mark.parametrize(("content", "needle"), [
    (b"P6\n2 2\n255\n" + bytes(12), "not a PFM file"),
    (b"Pf\n2 2\n0\n" + bytes(16), "invalid PFM header"),
    (b"Pf\n4 4\n-1\n" + bytes(16), "truncated"),
    (b"", "not a PFM file"),
])
def test_malformed(tmp_path, content, needle):
    path = tmp_path / "bad.pfm"
    path.write_bytes(content)
    with pytest.raises(InputError, match=needle):
        read_pfm(path)


def test_real_middlebury_gt(shared_data):
    disp = read_pfm(shared_data / "middlebury" / "Adirondack" / "disp0GT.pfm")
    assert disp.shape == (496, 718)
    finite = disp[np.isfinite(disp)]
    assert finite.size / disp.size > 0.99 and 5 < finite.min() < finite.max() < 73  # ndisp 73
    # Bottom-up handling: the top rows of this scene are farther (smaller disparity) than the floor.
    assert np.nanmedian(np.where(np.isinf(disp[:50]), np.nan, disp[:50])) < np.nanmedian(
        np.where(np.isinf(disp[-50:]), np.nan, disp[-50:]))
