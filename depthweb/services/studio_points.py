"""The Studio's clicks: readouts at points, 3D distances, and metric scale anchors.

Readouts say what a number is: "relative inverse depth 0.48" for relative-disparity models,
"relative depth 1.7" for relative-depth models, "depth 2.31 m" only for metric depth. Anchors
follow the rules of :func:`depthweb.geometry.align.fit_anchors` (one anchor determines one
number and says which; implausible fits are refused; leave-one-out residual).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from depthweb.errors import InputError
from depthweb.types import DepthKind, DepthResult

MAX_ANCHORS = 1000
"""At most this many scale anchors per request."""
VALUE_NAMES = {
    DepthKind.METRIC_DEPTH: "depth",
    DepthKind.RELATIVE_DEPTH: "relative depth",
    DepthKind.RELATIVE_DISPARITY: "relative inverse depth",
}
"""What a map's values are called in readouts."""


def depth_at(result: DepthResult, u: float, v: float) -> float | None:
    """The value at pixel ``(u, v)`` (column, row), or ``None`` when invalid or outside."""
    col, row = round(float(u)), round(float(v))
    if not (0 <= row < result.height and 0 <= col < result.width):
        return None
    value = float(result.depth[row, col])
    return value if bool(result.valid_mask[row, col]) else None


def value_text(result: DepthResult, value: float | None) -> str:
    """e.g. "depth 2.31 m", "relative inverse depth 0.48 (no unit)", "no valid value"."""
    if value is None:
        return "no valid value"
    name = VALUE_NAMES[result.kind]
    if result.kind.is_metric:
        return f"{name} {value:.4g} m"
    return f"{name} {value:.4g} (no unit: unknown scale and shift)"


def measure_text(state: Any) -> str:
    """Markdown for the measure panel: the value at each clicked point, 3D distance when
    metric. ``state`` is a :class:`depthweb.services.studio.StudioState`."""
    result = state.current
    if not state.points:
        return "Click a point on the photo to read its value; click a second one to measure."
    lines = []
    for letter, (u, v) in zip("AB", state.points, strict=False):
        lines.append(f"**{letter}** pixel ({u}, {v}): {value_text(result, depth_at(result, u, v))}")
    if len(state.points) == 2:
        lines.append(_distance_line(state))
    return "  \n".join(lines)


def _distance_line(state: Any) -> str:
    from depthweb.geometry.backproject import point_distance

    result = state.current
    if not result.kind.is_metric:
        return ("**Distance**: needs metric depth. This model is relative: add scale anchors "
                "(points of known depth) and align first.")
    try:
        d = point_distance(result.depth, result.intrinsics, *state.points)
    except InputError as exc:
        return f"**Distance**: {exc}"
    src = result.intrinsics.source
    return f"**Distance A–B**: {d:.3f} m (3D, with {src} intrinsics)"


def add_point(points: Sequence[tuple[int, int]], u: int, v: int) -> list[tuple[int, int]]:
    """Measure clicks: a third click starts a new pair."""
    points = list(points)
    return [(u, v)] if len(points) >= 2 else [*points, (u, v)]


def align(state: Any, anchors: Sequence[tuple[float, float, float]]) -> Any:
    """A copy of ``state`` whose depth is aligned to metric ``anchors`` ``(u, v, depth_m)``.

    Follows :func:`depthweb.geometry.align.fit_anchors`; a refused fit raises ``InputError``
    with its sentence and changes nothing.
    """
    from depthweb.geometry.align import fit_anchors

    anchors = [(float(u), float(v), float(z)) for u, v, z in anchors]
    native = state.native
    fit = fit_anchors(native.depth, native.kind, anchors, valid=native.valid_mask)
    if fit.refusal is not None:
        raise InputError(fit.refusal)
    report = {**fit.report(), "points": [list(a) for a in anchors]}
    note = (f"aligned to {fit.anchors} metric anchor(s) in {fit.space} space "
            f"({fit.determined} fitted): scale {fit.scale:.6g}, shift {fit.shift:.6g}; "
            f"residual {fit.residual_text}")
    aligned = replace(native, depth=fit.depth, kind=DepthKind.METRIC_DEPTH,
                      timings_ms=dict(native.timings_ms), notes=[*native.notes, note])
    return replace(state, aligned=aligned, alignment=report,
                   anchors=[(round(u), round(v), z) for u, v, z in anchors])


def parse_anchors(text: str | None) -> list[tuple[float, float, float]]:
    """Anchors from JSON text ``[[u, v, depth_m], ...]`` (the API's format); empty -> []."""
    if text is None or not str(text).strip():
        return []
    try:
        data = json.loads(text)
        anchors = [(float(a[0]), float(a[1]), float(a[2])) for a in data]
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise InputError(
            "Anchors must be JSON like [[u, v, depth_m], ...] with pixel column u and row v."
        ) from exc
    if len(anchors) > MAX_ANCHORS:
        raise InputError(f"Give at most {MAX_ANCHORS} anchors (got {len(anchors)}).")
    for u, v, z in anchors:
        if not all(math.isfinite(x) for x in (u, v, z)) or z <= 0:
            raise InputError(f"Anchor [{u:g}, {v:g}, {z:g}] needs a finite pixel column and row "
                             "and a positive depth in metres.")
    return anchors
