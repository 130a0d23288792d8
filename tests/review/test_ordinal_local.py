"""Local ordinal corrections: the flat-wall example of issue 12, margins in label units, far
pixels unchanged, refusals, and the rules version that keeps old labels what they were."""

from __future__ import annotations

import numpy as np
import pytest

from depthweb.errors import InputError
from depthweb.geometry.corrections import RULES_VERSION, LabelMap, apply_correction, refit_ordinal
from depthweb.geometry.ordinal import MARGIN_FRACTION, default_radius
from depthweb.types import Intrinsics, IntrinsicsSource

H, W = 120, 160
CAM = Intrinsics(150.0, 150.0, 79.5, 59.5, IntrinsicsSource.USER)
OBJ = (slice(50, 70), slice(70, 90))  # the 20x20 object
A, B = (80, 60), (95, 60)  # (column, row): A on the object, B on the wall 15 px away


def flat_wall(kind: str) -> tuple[LabelMap, np.ndarray]:
    """A flat wall (disparity 1.0 / depth 1.0 m) with the object predicted *behind* it, and a
    photo (grey wall, red object)."""
    if kind == "relative_disparity":
        x = np.full((H, W), 1.0, np.float32)
        x[OBJ] = 0.8
    else:
        x = np.full((H, W), 1.0, np.float32)
        x[OBJ] = 1.25
    photo = np.full((H, W, 3), 0.5, np.float32)
    photo[OBJ] = (0.9, 0.1, 0.1)
    return LabelMap.from_prediction(x, kind), photo


def closer(label: LabelMap, p, q) -> float:
    """How much closer p is than q, in label units (positive = p closer)."""
    a, b = float(label.depth[p[1], p[0]]), float(label.depth[q[1], q[0]])
    return a - b if label.kind == "relative_disparity" else b - a


def far_from(points, distance: float) -> np.ndarray:
    v, u = np.indices((H, W))
    out = np.ones((H, W), bool)
    for pu, pv in points:
        out &= np.hypot(u - pu, v - pv) > distance
    return out


@pytest.mark.parametrize("with_photo", [True, False])
@pytest.mark.parametrize("kind", ["relative_disparity", "metric_depth"])
def test_flat_wall_pair_is_local_ordered_and_positive(kind, with_photo):
    label, photo = flat_wall(kind)
    assert closer(label, A, B) < 0  # the prediction has it the wrong way round
    out = refit_ordinal(label, [(*A, *B)], guide=photo if with_photo else None)
    margin = MARGIN_FRACTION * 1.0  # the wall's typical magnitude is 1.0 (its range is 0)
    assert closer(out, A, B) >= margin * (1 - 1e-4)
    assert margin >= 0.01  # a margin that means something: 1 % of the wall's value at least
    if kind == "relative_disparity":
        assert np.nanmin(out.depth) >= 0.0  # no disparity turns negative
    else:
        assert np.nanmin(out.depth) > 0.0
    radius = default_radius((H, W))
    away = far_from([A, B], radius)
    assert away.sum() > 0.9 * H * W
    change = np.abs(out.depth[away].astype(float) - label.depth[away]) / np.abs(label.depth[away])
    assert change.max() < 0.01
    # the wall around the pair did not move either: the change stays on the object
    wall = np.ones((H, W), bool)
    wall[OBJ] = False
    assert np.abs(out.depth[wall] - label.depth[wall]).max() < 0.01 * margin + 1e-7


def test_global_tilt_only_on_request_changes_far_pixels():
    label, photo = flat_wall("relative_disparity")
    tilt = refit_ordinal(label, [(*A, *B)], mode="tilt", guide=photo)
    assert closer(tilt, A, B) >= MARGIN_FRACTION * (1 - 1e-4)  # margin no longer collapses
    away = far_from([A, B], default_radius((H, W)))
    assert np.abs(tilt.depth[away] - label.depth[away]).max() > 0.01


def test_pair_on_one_surface_is_refused_with_a_sentence():
    label, photo = flat_wall("relative_disparity")
    with pytest.raises(InputError, match="look like one surface"):
        refit_ordinal(label, [(20, 20, 23, 20)], guide=photo)


def test_contradictory_local_pairs_are_refused():
    label, photo = flat_wall("relative_disparity")
    with pytest.raises(InputError, match="contradict"):
        refit_ordinal(label, [(*A, *B), (*B, *A)], guide=photo)


def test_several_pairs_all_hold():
    label, photo = flat_wall("relative_disparity")
    pairs = [(*A, *B), (75, 55, 75, 40), (85, 65, 100, 80)]
    out = refit_ordinal(label, pairs, guide=photo)
    for ua, va, ub, vb in pairs:
        assert closer(out, (ua, va), (ub, vb)) >= MARGIN_FRACTION * (1 - 1e-4)


def test_rules_version_one_recomputes_as_the_old_global_tilt():
    label, photo = flat_wall("relative_disparity")
    payload = {"pairs": [[*A, *B]]}
    old = apply_correction(label, "ordinal", payload, None, CAM, rules_version=1)
    new = apply_correction(label, "ordinal", payload, None, CAM, guide=photo,
                           rules_version=RULES_VERSION)
    assert not old.equals(new)
    assert old.equals(refit_ordinal(label, [(*A, *B)], mode="tilt", rules_version=1))
    # the old rule tilted the whole wall
    away = far_from([A, B], default_radius((H, W)))
    assert np.abs(old.depth[away] - label.depth[away]).max() > 0.01
    with pytest.raises(InputError, match="rules version"):
        apply_correction(label, "ordinal", payload, None, CAM, rules_version=RULES_VERSION + 1)


def test_one_anchor_on_disparity_is_refused_by_the_new_rules_only():
    rng = np.random.default_rng(0)
    depth = rng.uniform(1.0, 5.0, (H, W))
    label = LabelMap.from_prediction(1.0 / depth, "relative_disparity")
    payload = {"anchors": [[10, 10, float(depth[10, 10])]]}
    with pytest.raises(InputError, match="second anchor"):
        apply_correction(label, "anchors", payload, None, CAM)
    old = apply_correction(label, "anchors", payload, None, CAM, rules_version=1)
    assert old.kind == "metric_depth"


def test_rules_one_anchor_fit_is_frozen():
    """Rules 1: one anchor on disparity fits the scale with the shift taken as 0 (whatever the
    live anchor fit does today), so old labels keep their values."""
    from depthweb.geometry.rules_v1 import anchors_v1

    disp = np.linspace(0.2, 1.0, H * W, dtype=np.float32).reshape(H, W)
    from depthweb.types import DepthKind

    depth = anchors_v1(disp, DepthKind.RELATIVE_DISPARITY, [(10, 20, 2.0)])
    expected = 2.0 * float(disp[20, 10]) / disp
    np.testing.assert_allclose(depth, expected, rtol=1e-5)
