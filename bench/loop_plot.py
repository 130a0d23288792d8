"""A line chart as a PNG with Pillow alone (matplotlib is not a dependency): the loop
benchmark's AbsRel against the number of reviewed images, with the teacher's and the
ground-truth student's levels as dashed lines."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

W, H = 640, 400
LEFT, RIGHT, TOP, BOTTOM = 70, 170, 40, 50


def _dashed(draw, xy0, xy1, fill, dash: int = 6) -> None:
    (x0, y0), (x1, y1) = xy0, xy1
    length = max(abs(x1 - x0), 1)
    for k in range(0, length, 2 * dash):
        draw.line([(x0 + k, y0), (min(x0 + k + dash, x1), y1)], fill=fill, width=2)


def curve_png(path: Path, xs: Sequence[float], ys: Sequence[float], *, title: str,
              levels: dict[str, float], xlabel: str, ylabel: str) -> Path:
    """Write the chart of points (``xs``, ``ys``) and horizontal ``levels`` to ``path``."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    values = [*ys, *levels.values()]
    lo, hi = min(values), max(values)
    pad = 0.1 * (hi - lo or 1.0)
    lo, hi = lo - pad, hi + pad
    x_hi = max(xs) or 1

    def px(x: float, y: float) -> tuple[int, int]:
        u = LEFT + (W - LEFT - RIGHT) * (x / x_hi)
        v = TOP + (H - TOP - BOTTOM) * (1 - (y - lo) / (hi - lo))
        return round(u), round(v)

    d.rectangle([LEFT, TOP, W - RIGHT, H - BOTTOM], outline="black")
    for k in range(5):
        y = lo + (hi - lo) * k / 4
        _, v = px(0, y)
        d.line([(LEFT - 4, v), (LEFT, v)], fill="black")
        d.text((8, v - 6), f"{y:.3f}", fill="black")
    for x in xs:
        u, _ = px(x, lo)
        d.line([(u, H - BOTTOM), (u, H - BOTTOM + 4)], fill="black")
        d.text((u - 8, H - BOTTOM + 8), f"{x:g}", fill="black")
    colours = ["#d62728", "#2ca02c", "#9467bd", "#8c564b"]
    for i, (name, level) in enumerate(levels.items()):
        c = colours[i % len(colours)]
        _dashed(d, px(0, level), px(x_hi, level), c)
        d.text((W - RIGHT + 8, px(0, level)[1] - 6), f"{name} {level:.3f}", fill=c)
    pts = [px(x, y) for x, y in zip(xs, ys, strict=True)]
    d.line(pts, fill="#1f77b4", width=3)
    for u, v in pts:
        d.ellipse([u - 4, v - 4, u + 4, v + 4], fill="#1f77b4")
    d.line([(W - RIGHT + 8, TOP + 6), (W - RIGHT + 28, TOP + 6)], fill="#1f77b4", width=3)
    d.text((W - RIGHT + 32, TOP), "reviewed student", fill="#1f77b4")
    d.text((LEFT, 12), title, fill="black")
    d.text(((W - RIGHT + LEFT) // 2 - 60, H - 22), xlabel, fill="black")
    d.text((8, TOP - 22), ylabel, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
