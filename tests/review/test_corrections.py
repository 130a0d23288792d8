"""Label corrections (pure numpy): plane fill recovers a plane, anchors and ordinal re-fits,
ignore mask, far fill, and the dispatcher's refusals."""

from __future__ import annotations

import numpy as np
import pytest

from depthweb.errors import InputError
from depthweb.geometry.corrections import (
    LabelMap,
    apply_correction,
    apply_mask,
    border_ring,
    dilate,
    far_fill,
    plane_fill,
    refit_anchors,
    refit_ordinal,
)
from depthweb.types import DepthKind, Intrinsics, IntrinsicsSource

H, W = 48, 64
CAM = Intrinsics(100.0, 104.0, 31.5, 23.5, IntrinsicsSource.USER)


def plane_depth(normal, offset, cam=CAM, h=H, w=W) -> np.ndarray:
    """Depth along the optical axis of the plane n . X = offset seen through ``cam``."""
    n = np.asarray(normal, float) / np.linalg.norm(normal)
    v, u = np.indices((h, w), dtype=float)
    dots = n[0] * (u - cam.cx) / cam.fx + n[1] * (v - cam.cy) / cam.fy + n[2]
    return offset / dots


def region(rows: slice, cols: slice) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[rows, cols] = True
    return m


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("kind", ["metric_depth", "relative_depth", "relative_disparity"])
def test_plane_fill_recovers_a_corrupted_plane(seed, kind):
    rng = np.random.default_rng(seed)
    normal = [rng.uniform(-0.4, 0.4), rng.uniform(-0.6, 0.6), 1.0]
    depth = plane_depth(normal, rng.uniform(2.0, 6.0))
    truth = 2.5 / depth + 0.3 if kind == "relative_disparity" else depth
    hole = region(slice(12, 33), slice(18, 45))
    corrupted = truth.copy()
    corrupted[hole] = rng.uniform(0.1, 10.0, hole.sum())  # a reflective table top, say
    corrupted[hole & (rng.random((H, W)) < 0.2)] = np.nan
    label = LabelMap.from_prediction(corrupted, kind)
    filled = plane_fill(label, hole, CAM)
    assert filled.kind == label.kind
    np.testing.assert_allclose(filled.depth[hole], truth[hole], rtol=2e-5)
    # outside the region nothing changed, bit for bit
    assert np.array_equal(filled.depth[~hole], label.depth[~hole].astype(np.float32))
    assert np.abs(filled.depth[hole] - truth[hole]).max() < np.abs(
        np.nan_to_num(corrupted[hole]) - truth[hole]).max() / 100


def test_plane_fill_ignores_masked_border_pixels():
    depth = plane_depth([0.1, -0.3, 1.0], 4.0)
    hole = region(slice(10, 30), slice(10, 30))
    noisy = depth.copy()
    noisy[hole] = 1.0
    glass = region(slice(5, 40), slice(28, 36))  # part of the border is glass: ignored
    noisy[glass & ~hole] = 50.0
    label = apply_mask(LabelMap.from_prediction(noisy, "metric_depth"), glass)
    ring = border_ring(label, hole)
    assert not (ring & glass).any() and ring.sum() > 20
    filled = plane_fill(label, hole, CAM)
    np.testing.assert_allclose(filled.depth[hole], depth[hole], rtol=2e-5)
    assert not filled.ignore[hole].any()  # a filled region is a label again


def test_plane_fill_refuses_a_region_without_border():
    label = LabelMap.from_prediction(np.full((H, W), np.nan), "metric_depth")
    with pytest.raises(InputError, match="no usable border"):
        plane_fill(label, region(slice(10, 20), slice(10, 20)), CAM)


@pytest.mark.parametrize("kind", ["relative_disparity", "relative_depth", "metric_depth"])
def test_anchors_refit_scale_and_shift(kind):
    rng = np.random.default_rng(3)
    depth = rng.uniform(1.0, 8.0, (H, W))
    pred = 0.37 / depth + 0.05 if kind == "relative_disparity" else 2.0 * depth + 0.4
    label = LabelMap.from_prediction(pred, kind)
    anchors = [(u, v, float(depth[v, u])) for u, v in [(3, 4), (40, 30), (60, 10)]]
    out = refit_anchors(label, anchors)
    assert out.kind == DepthKind.METRIC_DEPTH
    np.testing.assert_allclose(out.depth, depth, rtol=1e-4)


def test_anchors_keep_the_far_region_far():
    rng = np.random.default_rng(4)
    depth = rng.uniform(1.0, 8.0, (H, W))
    label = far_fill(LabelMap.from_prediction(1.0 / depth, "relative_disparity"),
                     region(slice(0, 5), slice(None)))
    assert np.all(label.depth[:5] == 0.0) and label.far[:5].all()
    out = refit_anchors(label, [(10, 20, float(depth[20, 10])), (50, 40, float(depth[40, 50]))])
    assert out.far[:5].all()
    assert np.all(out.depth[:5] == np.nanmax(out.depth[5:]))


def disparity_scene(wiggle: float = 0.05) -> np.ndarray:
    """Disparity (H, W) growing downwards and to the left (left predicted too near)."""
    v, u = np.indices((H, W), dtype=float)
    return 1.0 + 0.02 * v - 0.01 * u + wiggle * np.sin(u / 5.0) * np.cos(v / 7.0)


@pytest.mark.parametrize("wiggle", [0.0, 0.05])
@pytest.mark.parametrize("kind", ["relative_disparity", "metric_depth"])
def test_ordinal_pair_is_satisfied_after_the_fit(kind, wiggle):
    disp = disparity_scene(wiggle)
    x = disp if kind == "relative_disparity" else 1.0 / disp
    label = LabelMap.from_prediction(x, kind)
    a, b = (60, 24), (4, 24)  # A (right) is really closer than B (left)
    nearer = (lambda m, p, q: m[p[1], p[0]] > m[q[1], q[0]]) if kind == "relative_disparity" \
        else (lambda m, p, q: m[p[1], p[0]] < m[q[1], q[0]])
    assert not nearer(label.depth, a, b)
    out = refit_ordinal(label, [(*a, *b)], mode="tilt", rules_version=1)
    assert nearer(out.depth, a, b)
    gap = abs(float(out.depth[a[1], a[0]] - out.depth[b[1], b[0]]))
    lo, hi = np.percentile(label.depth, [5, 95])
    assert gap >= 0.01 * (hi - lo) * (1 - 1e-4)
    # the correction is a tilt (affine in the pixel coordinates) ...
    change = out.depth.astype(float) - label.depth
    v, u = np.indices((H, W), dtype=float)
    design = np.stack([u.ravel(), v.ravel(), np.ones(H * W)], axis=1)
    coef = np.linalg.lstsq(design, change.ravel(), rcond=None)[0]
    np.testing.assert_allclose(design @ coef, change.ravel(), atol=1e-5)
    # ... and the smallest one: a horizontal-only tilt that orders the pair is larger
    need = abs(float(label.depth[a[1], a[0]] - label.depth[b[1], b[0]])) + 0.01 * (hi - lo)
    horizontal = (u - u.mean()) * need / abs(a[0] - b[0])
    assert np.mean(change**2) <= np.mean(horizontal**2) * (1 + 1e-6)


def test_ordinal_pair_already_in_order_changes_nothing():
    label = LabelMap.from_prediction(disparity_scene(), "relative_disparity")
    out = refit_ordinal(label, [(4, 24, 60, 24)])
    assert out.equals(label)
    out = refit_ordinal(label, [(4, 24, 60, 24)], mode="tilt")
    assert out.equals(label)


def test_contradictory_pairs_are_refused():
    label = LabelMap.from_prediction(disparity_scene(), "relative_disparity")
    with pytest.raises(InputError, match="contradict"):
        refit_ordinal(label, [(4, 24, 60, 24), (60, 24, 4, 24)])


def test_mask_modes_record_the_region_and_keep_the_depth():
    label = LabelMap.from_prediction(disparity_scene(), "relative_disparity")
    sky, person = region(slice(0, 10), slice(None)), region(slice(20, 40), slice(5, 15))
    one = apply_mask(label, sky)
    two = apply_mask(one, person)
    assert np.array_equal(two.ignore, sky | person)
    assert np.array_equal(apply_mask(two, person, "subtract").ignore, sky)
    assert np.array_equal(apply_mask(two, person, "replace").ignore, person)
    assert not apply_mask(two, np.zeros((H, W), bool), "replace").ignore.any()
    assert np.array_equal(two.depth, label.depth)
    assert not label.ignore.any()  # inputs are never modified


def test_dispatcher_refuses_bad_regions_and_actions():
    label = LabelMap.from_prediction(disparity_scene(), "relative_disparity")
    with pytest.raises(InputError, match="empty"):
        apply_correction(label, "far_fill", {}, np.zeros((H, W), bool), CAM)
    with pytest.raises(InputError, match="paint on the shown image"):
        apply_correction(label, "mask", {}, np.ones((H + 1, W), bool), CAM)
    with pytest.raises(InputError, match="needs a painted region"):
        apply_correction(label, "plane_fill", {}, None, CAM)
    with pytest.raises(InputError, match="not a label correction"):
        apply_correction(label, "approve", {}, None, CAM)
    with pytest.raises(InputError, match="Anchor"):
        apply_correction(label, "anchors", {"anchors": [[1, 2]]}, None, CAM)


def test_dilate_grows_by_the_radius():
    m = np.zeros((9, 9), bool)
    m[4, 4] = True
    assert dilate(m, 2).sum() == 25 and dilate(m, 0).sum() == 1
