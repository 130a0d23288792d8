"""Depth colourisation in pure numpy (no matplotlib): 256-entry lookup tables.

Convention: **near is bright / warm**. ``colorize`` treats its input as depth-like (larger =
farther) and maps the nearest values to the warm / bright end of the map (red for turbo,
yellow for inferno and viridis, white for gray). Pass ``invert=True`` for disparity-like input
(larger = nearer, e.g. ``relative_disparity`` predictions) to keep near warm.

Turbo is Google's published 256-entry table (A. Mikhailov, 2019; its polynomial approximation
is up to 32 levels off at the dark end, so the table itself is stored). Viridis and inferno are
the degree-6 polynomial fits of the matplotlib maps (M. Zucker, 2020), evaluated once at 256
points: within 6 of 255 levels of matplotlib's tables, invisible in a depth picture.
"""

from __future__ import annotations

from functools import cache
from typing import Literal

import numpy as np

Colormap = Literal["turbo", "inferno", "viridis", "gray"]

# Google's Turbo table (Copyright 2019 Google LLC, Apache-2.0), 256 x RGB bytes in hex.
_TURBO_HEX = (
    "30123b32154333184a341b51351e5836215f37246638276d392a733a2d793b2f803c32863d358b3e38913f3b97"
    "3f3e9c4040a24143a74146ac4249b1424bb5434eba4451bf4454c34456c74559cb455ccf455ed34661d64664da"
    "4666dd4669e0466be3476ee64771e94773eb4776ee4778f0477bf2467df44680f64682f84685fa4687fb458afc"
    "458cfd448ffe4391fe4294ff4196ff4099ff3e9bfe3d9efe3ba0fd3aa3fc38a5fb37a8fa35abf833adf731aff5"
    "2fb2f42eb4f22cb7f02ab9ee28bceb27bee925c0e723c3e422c5e220c7df1fc9dd1ecbda1ccdd81bd0d51ad2d2"
    "1ad4d019d5cd18d7ca18d9c818dbc518ddc218dec018e0bd19e2bb19e3b91ae4b61ce6b41de7b21fe9af20eaac"
    "22ebaa25eca727eea42aefa12cf09e2ff19b32f29835f39438f4913cf58e3ff68a43f78746f8844af8804ef97d"
    "52fa7a55fa7659fb735dfc6f61fc6c65fd6969fd666dfe6271fe5f75fe5c79fe597dff5680ff5384ff5188ff4e"
    "8bff4b8fff4992ff4796fe4499fe429cfe409ffd3fa1fd3da4fc3ca7fc3aa9fb39acfb38affa37b1f936b4f836"
    "b7f735b9f635bcf534bef434c1f334c3f134c6f034c8ef34cbed34cdec34d0ea34d2e935d4e735d7e535d9e436"
    "dbe236dde037dfdf37e1dd37e3db38e5d938e7d739e9d539ebd339ecd13aeecf3aefcd3af1cb3af2c93af4c73a"
    "f5c53af6c33af7c13af8be39f9bc39faba39fbb838fbb637fcb336fcb136fdae35fdac34fea933fea732fea431"
    "fea130fe9e2ffe9b2dfe992cfe962bfe932afe9029fd8d27fd8a26fc8725fc8423fb8122fb7e21fa7b1ff9781e"
    "f9751df8721cf76f1af66c19f56918f46617f36315f26014f15d13f05b12ef5811ed5510ec530feb500eea4e0d"
    "e84b0ce7490ce5470be4450ae2430ae14109df3f08dd3d08dc3b07da3907d83706d63506d43305d23105d02f05"
    "ce2d04cc2b04ca2a04c82803c52603c32503c12302be2102bc2002b91e02b71d02b41b01b21a01af1801ac1701"
    "a91601a71401a41301a112019e10019b0f01980e01950d01920b018e0a018b09028808028507028106027e0502"
    "7a0403"
)

# Coefficients c0..c6 (rows) of r, g, b (columns) in powers of t.
_POLY = {
    "viridis": (
        (0.2777273272234177, 0.005407344544966578, 0.3340998053353061),
        (0.1050930431085774, 1.404613529898575, 1.384590162594685),
        (-0.3308618287255563, 0.214847559468213, 0.09509516302823659),
        (-4.634230498983486, -5.799100973351585, -19.33244095627987),
        (6.228269936347081, 14.17993336680509, 56.69055260068105),
        (4.776384997670288, -13.74514537774601, -65.35303263337234),
        (-5.435455855934631, 4.645852612178535, 26.3124352495832),
    ),
    "inferno": (
        (0.0002189403691192265, 0.001651004631001012, -0.01948089843709184),
        (0.1065134194856116, 0.5639564367884091, 3.932712388889277),
        (11.60249308247187, -3.972853965665698, -15.9423941062914),
        (-41.70399613139459, 17.43639888205313, 44.35414519872813),
        (77.162935699427, -33.40235894210092, -81.80730925738993),
        (-71.31942824499214, 32.62606426397723, 73.20951985803202),
        (25.13112622477341, -12.24266895238567, -23.07032500287172),
    ),
}


@cache
def lookup_table(cmap: Colormap) -> np.ndarray:
    """(256, 3) uint8 table of ``cmap``; entry 0 is the far / low end, 255 the near / high end."""
    t = np.linspace(0.0, 1.0, 256)
    if cmap == "turbo":
        table = np.frombuffer(bytes.fromhex("".join(_TURBO_HEX)), dtype=np.uint8)
        return table.reshape(256, 3)  # frombuffer of bytes: already read-only
    if cmap == "gray":
        rgb = np.repeat(t[:, None], 3, axis=1)
    elif cmap in _POLY:
        coeffs = np.asarray(_POLY[cmap])  # (degree + 1, 3)
        powers = t[:, None] ** np.arange(len(coeffs))[None, :]
        rgb = powers @ coeffs
    else:
        raise ValueError(f"unknown colormap {cmap!r}; use turbo, inferno, viridis or gray")
    table = np.rint(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)
    table.flags.writeable = False
    return table


def colorize(
    depth: np.ndarray,
    *,
    cmap: Colormap = "turbo",
    invert: bool = False,
    valid_mask: np.ndarray | None = None,
    percentiles: tuple[float, float] | None = (2.0, 98.0),
    value_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Colour a depth-like map; near is warm unless ``invert`` (see the module docstring).

    Args:
        depth: (H, W) values; non-finite ones are invalid.
        cmap: "turbo", "inferno", "viridis" or "gray".
        invert: the input is disparity-like (larger = nearer).
        valid_mask: (H, W) bool, optional; pixels outside it are invalid.
        percentiles: the valid values' percentiles mapped to the ends of the map (robust to
            outliers); ``None`` uses min and max. Ignored when ``value_range`` is given.
        value_range: explicit ``(low, high)``, e.g. to share a scale between two maps.

    Returns:
        (H, W, 3) uint8; invalid pixels are black.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {depth.shape}")
    ok = np.isfinite(depth)
    if valid_mask is not None:
        ok &= valid_mask.astype(bool, copy=False)
    if not ok.any():
        return np.zeros((*depth.shape, 3), dtype=np.uint8)
    if value_range is not None:
        lo, hi = (float(v) for v in value_range)
    else:
        values = depth[ok].astype(np.float64)
        if percentiles is not None:
            lo, hi = (float(v) for v in np.percentile(values, percentiles))
        else:
            lo, hi = float(values.min()), float(values.max())
    span = hi - lo if hi > lo else 1.0
    # whole-array float32 arithmetic (no gathers): fast on big maps; invalid -> index 0
    t = depth.astype(np.float32)
    t -= np.float32(lo)
    t *= np.float32(255.0 / span)
    np.clip(t, 0.0, 255.0, out=t)
    if not invert:
        np.subtract(np.float32(255.0), t, out=t)  # depth: small = near = high end of the map
    t[~ok] = 0.0
    out = lookup_table(cmap)[np.rint(t, out=t).astype(np.uint8)]
    out[~ok] = 0
    return out
