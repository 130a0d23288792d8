"""A :class:`~depthweb.geometry.mesh.GridMesh` as an interactive plotly figure (the Studio's and
Review's 3D views): one ``Mesh3d`` coloured per vertex, seen from the capture viewpoint.
Kept out of :mod:`depthweb.geometry`, which is pure numpy."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from depthweb.geometry.mesh import GridMesh

if TYPE_CHECKING:  # plotly is imported lazily by mesh_to_plotly
    import plotly.graph_objects as go


def mesh_to_plotly(
    mesh: GridMesh,
    *,
    title: str = "",
    unit: str = "m",
    note: str | None = None,
    scene: dict | None = None,
    height: int | None = None,
) -> go.Figure:
    """A plotly figure with one ``Mesh3d`` coloured per vertex, seen from the camera.

    The view looks down +z from behind the camera with -y up, so the photo appears upright
    and unmirrored; the axes keep the camera frame (x right, y down, z forward) and are
    labelled with ``unit`` ("m", or "relative" for shape-only meshes). Arrays go out as
    compact typed arrays: float32 positions, uint16/uint32 indices, uint8 colours.
    ``note`` (e.g. "shape only, unknown scale") is shown under the title; ``scene`` entries
    (``xaxis_range=[..]`` style or nested dicts) and ``height`` override the layout's.
    """
    import plotly.graph_objects as go

    v = mesh.vertices
    index_dtype = np.uint16 if mesh.n_vertices <= np.iinfo(np.uint16).max else np.uint32
    faces = mesh.faces.astype(index_dtype)
    trace = go.Mesh3d(
        x=np.ascontiguousarray(v[:, 0]),
        y=np.ascontiguousarray(v[:, 1]),
        z=np.ascontiguousarray(v[:, 2]),
        i=np.ascontiguousarray(faces[:, 0]),
        j=np.ascontiguousarray(faces[:, 1]),
        k=np.ascontiguousarray(faces[:, 2]),
        vertexcolor=np.ascontiguousarray(mesh.colors),
        flatshading=False,
        lighting={"ambient": 0.9, "diffuse": 0.15, "specular": 0.0, "roughness": 1.0},
        hovertemplate=(
            f"x %{{x:.3g}} {unit}<br>y %{{y:.3g}} {unit}<br>depth %{{z:.3g}} {unit}<extra></extra>"
        ),
        showscale=False,
    )
    layout = _plotly_layout(title, unit, note)
    for key, value in (scene or {}).items():
        axis, _, sub = key.partition("_")
        if sub:
            layout["scene"][axis][sub] = value
        else:
            layout["scene"][key] = value
    if height:
        layout["height"] = height
    return go.Figure(data=[trace], layout=layout)


def _plotly_layout(title: str, unit: str, note: str | None) -> dict:
    """Camera at the capture viewpoint: eye behind the origin on -z, looking down +z, -y up."""
    text = title if not note else f"{title}<br><sup>{note}</sup>"
    axis = {"showbackground": False, "zeroline": False}
    camera = {
        "eye": {"x": 0.0, "y": 0.0, "z": -1.6},
        "up": {"x": 0.0, "y": -1.0, "z": 0.0},
        "center": {"x": 0.0, "y": 0.0, "z": 0.0},
        "projection": {"type": "perspective"},
    }
    return {
        "title": {"text": text} if text else None,
        "margin": {"l": 0, "r": 0, "t": 40 if text else 0, "b": 0},
        "scene": {
            "xaxis": {"title": {"text": f"x [{unit}]"}, **axis},
            "yaxis": {"title": {"text": f"y [{unit}]"}, **axis},
            "zaxis": {"title": {"text": f"depth [{unit}]"}, **axis},
            "aspectmode": "data",
            "camera": camera,
            "dragmode": "orbit",
        },
    }
