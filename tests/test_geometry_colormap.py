"""Colourisation: shapes, near-is-warm convention, invalid pixels, range handling, tables."""

from __future__ import annotations

import numpy as np
import pytest

from depthweb.geometry.colormap import colorize, lookup_table

CMAPS = ["turbo", "inferno", "viridis", "gray"]

# matplotlib's tables at entries 0, 64, 128, 191, 255 (the five-colour palettes)
REFERENCE = {
    "viridis": ["440154", "3b528b", "21908c", "5dc863", "fde725"],
    "inferno": ["000004", "56106e", "bb3754", "f98c0a", "fcffa4"],
}


def ramp(h: int = 20, w: int = 50) -> np.ndarray:
    return np.tile(np.linspace(1.0, 6.0, w), (h, 1))  # near on the left


def luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64) @ np.array([0.2126, 0.7152, 0.0722])


@pytest.mark.parametrize("cmap", CMAPS)
def test_table_shape_and_reference(cmap):
    table = lookup_table(cmap)
    assert table.shape == (256, 3) and table.dtype == np.uint8
    assert not table.flags.writeable
    if cmap in REFERENCE:
        ref = np.array([[int(h[i : i + 2], 16) for i in (0, 2, 4)] for h in REFERENCE[cmap]])
        assert np.abs(table[[0, 64, 128, 191, 255]].astype(int) - ref).max() <= 6
    if cmap != "turbo":
        assert np.all(np.diff(luminance(table)) > -1.0)  # perceptually ordered: dark to bright


def test_turbo_is_googles_table():
    table = lookup_table("turbo")
    assert table[0].tolist() == [48, 18, 59] and table[255].tolist() == [122, 4, 3]
    assert table[128].tolist() == [164, 252, 60]


@pytest.mark.parametrize("cmap", CMAPS)
def test_near_is_warm_or_bright(cmap):
    depth = ramp()
    rgb = colorize(depth, cmap=cmap, percentiles=None)
    assert rgb.shape == (20, 50, 3) and rgb.dtype == np.uint8
    table = lookup_table(cmap)
    assert rgb[0, 0].tolist() == table[255].tolist()  # nearest -> top of the map
    assert rgb[0, -1].tolist() == table[0].tolist()  # farthest -> bottom
    if cmap == "turbo":
        assert rgb[0, 0, 0] > rgb[0, 0, 2] and rgb[0, -1, 2] > rgb[0, -1, 0]  # red near, blue far
    else:
        assert luminance(rgb[0, 0]) > luminance(rgb[0, -1])


def test_invert_for_disparity_input():
    depth = ramp()
    disparity = 1.0 / depth  # larger = nearer
    rgb = colorize(disparity, invert=True, percentiles=None)
    table = lookup_table("turbo")
    assert rgb[0, 0].tolist() == table[255].tolist() and rgb[0, -1].tolist() == table[0].tolist()
    plain = colorize(disparity, percentiles=None)
    assert plain[0, 0].tolist() == table[0].tolist()


def test_invalid_pixels_are_black():
    depth = ramp()
    depth[3, 4] = np.nan
    depth[5, 6] = np.inf
    mask = np.ones(depth.shape, dtype=bool)
    mask[7, 8] = False
    rgb = colorize(depth, cmap="turbo", valid_mask=mask)
    for r, c in [(3, 4), (5, 6), (7, 8)]:
        assert rgb[r, c].tolist() == [0, 0, 0]
    assert (rgb.reshape(-1, 3).sum(axis=1) == 0).sum() == 3  # turbo has no black entry
    assert not colorize(np.full((4, 4), np.nan)).any()


def test_percentiles_resist_outliers():
    depth = np.linspace(1.0, 6.0, 10_000).reshape(100, 100)
    depth[0, 0] = 1e6
    robust = colorize(depth, cmap="gray")
    naive = colorize(depth, cmap="gray", percentiles=None)
    assert len(np.unique(robust[..., 0])) > 200  # full contrast kept
    assert len(np.unique(naive[..., 0])) <= 2  # everything squashed next to the outlier
    assert robust[0, 0].tolist() == lookup_table("gray")[0].tolist()  # outlier: far end


def test_value_range_is_shared_and_constant_maps_work():
    depth = ramp()
    a = colorize(depth, value_range=(1.0, 11.0), cmap="gray")
    assert a[0, -1, 0] == 128  # 6 m is half way between 1 and 11
    const = colorize(np.full((3, 3), 2.0))
    assert len(np.unique(const.reshape(-1, 3), axis=0)) == 1
