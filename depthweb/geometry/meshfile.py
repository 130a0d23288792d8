"""Mesh files for download and for ``gr.Model3D``: compact GLB and binary PLY, written atomically.

GLB layout (core glTF 2.0, nothing a viewer must support beyond it):

* one mesh made of primitives of at most 65 535 vertices, so indices are ``uint16``
  (index 65 535 is never used: WebGL 2 treats it as a primitive-restart marker);
* float32 positions in the camera frame, and a node rotation of 180 degrees about x that turns
  them into glTF's y-up, looking-down-minus-z convention (the photo appears upright);
* colour either per vertex (``COLOR_0``, 4 bytes) or, with ``texture=``, the photo as one
  JPEG/PNG texture with float32 ``TEXCOORD_0`` (the texture keeps the photo's full resolution
  whatever the vertex grid);
* an unlit, double-sided material (``KHR_materials_unlit`` listed as *used*, not *required*,
  so viewers without it fall back to a plain PBR material).

Size: a vertex costs 12 B of position + 4 B (colour) or 8 B (uv), a triangle 6 B. One vertex
per pixel of a 1024x768 map is 786k vertices and 1.57M triangles: >= 22 MB even so, and
>= 12.6 MB with quantised positions and triangle strips. The full-resolution export therefore
pairs the full-resolution photo (texture) with a 512x384 vertex grid (``mesh.GLB_GRID``),
about 7 MB; see docs/benchmarks.md (section 2) for measured sizes.
"""

from __future__ import annotations

import io
import json
import logging
import os
import struct
from typing import Literal

import numpy as np

from depthweb.fsutil import atomic_write_bytes
from depthweb.geometry.mesh import GridMesh

log = logging.getLogger(__name__)

MAX_CHUNK_VERTICES = 65535  # indices 0..65534 in uint16
MAX_TEXTURE_SIDE = 4096  # larger photos are downscaled (UVs are relative, nothing else changes)
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_FLOAT, _UBYTE, _USHORT, _UINT = 5126, 5121, 5123, 5125
_ROT_X_180 = [1.0, 0.0, 0.0, 0.0]  # quaternion (x, y, z, w): (x, y, z) -> (x, -y, -z)


def chunk_ranges(
    faces: np.ndarray, max_vertices: int = MAX_CHUNK_VERTICES
) -> list[tuple[int, int, int, int]]:
    """Split faces into runs whose vertices fit a window of ``max_vertices`` indices.

    ``faces`` (M, 3) must be sorted by their smallest index (``build_grid_mesh`` output is).
    Returns ``(face_start, face_stop, vertex_start, vertex_stop)`` per chunk, or ``[]`` when
    some face spans more than ``max_vertices`` indices (then use 32-bit indices).
    """
    if len(faces) == 0:
        return []
    fmin = faces.min(axis=1)
    if np.any(np.diff(fmin) < 0):
        raise ValueError("faces must be sorted by their smallest vertex index")
    running_max = np.maximum.accumulate(faces.max(axis=1))  # monotone: searchable
    chunks, start = [], 0
    while start < len(faces):
        v0 = int(fmin[start])
        stop = int(np.searchsorted(running_max, v0 + max_vertices, side="left"))
        if stop <= start:
            return []
        v1 = int(faces[start:stop].max()) + 1
        chunks.append((start, stop, v0, v1))
        start = stop
    return chunks


class _GlbBuilder:
    """Accumulates binary buffer views and accessors for one GLB file."""

    def __init__(self) -> None:
        self.blob = io.BytesIO()
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def view(self, data: bytes, target: int | None = None) -> int:
        pad = (-self.blob.tell()) % 4
        self.blob.write(b"\0" * pad)
        entry = {"buffer": 0, "byteOffset": self.blob.tell(), "byteLength": len(data)}
        if target is not None:
            entry["target"] = target
        self.blob.write(data)
        self.views.append(entry)
        return len(self.views) - 1

    def accessor(self, array: np.ndarray, ctype: int, kind: str, target: int, **extra) -> int:
        view = self.view(np.ascontiguousarray(array).tobytes(), target)
        entry = {"bufferView": view, "componentType": ctype, "count": len(array), "type": kind}
        entry.update(extra)
        self.accessors.append(entry)
        return len(self.accessors) - 1

    def primitive(self, vertices, colors, uv, faces, material: int) -> dict:
        attrs = {
            "POSITION": self.accessor(
                vertices.astype(np.float32, copy=False),
                _FLOAT,
                "VEC3",
                _ARRAY_BUFFER,
                min=vertices.min(axis=0).tolist(),
                max=vertices.max(axis=0).tolist(),
            )
        }
        if uv is not None:
            attrs["TEXCOORD_0"] = self.accessor(uv, _FLOAT, "VEC2", _ARRAY_BUFFER)
        else:
            rgba = np.empty((len(colors), 4), dtype=np.uint8)
            rgba[:, :3] = colors
            rgba[:, 3] = 255
            attrs["COLOR_0"] = self.accessor(rgba, _UBYTE, "VEC4", _ARRAY_BUFFER, normalized=True)
        small = int(faces.max(initial=0)) < MAX_CHUNK_VERTICES
        idx = faces.astype(np.uint16 if small else np.uint32).reshape(-1)
        indices = self.accessor(idx, _USHORT if small else _UINT, "SCALAR", _ELEMENT_ARRAY_BUFFER)
        return {"attributes": attrs, "indices": indices, "material": material, "mode": 4}


def _encode_texture(texture: np.ndarray, fmt: str, quality: int) -> tuple[bytes, str]:
    from PIL import Image

    if texture.ndim != 3 or texture.shape[2] != 3 or texture.dtype != np.uint8:
        raise ValueError(f"texture must be (H, W, 3) uint8, got {texture.dtype} {texture.shape}")
    buf = io.BytesIO()
    img = Image.fromarray(texture)
    if max(img.size) > MAX_TEXTURE_SIDE:  # what every WebGL device can sample
        img.thumbnail((MAX_TEXTURE_SIDE, MAX_TEXTURE_SIDE), Image.Resampling.LANCZOS)
    if fmt == "jpeg":
        # no optimize=True: Pillow's buffer for optimised 4:4:4 JPEG overflows on noisy photos
        # ("broken data stream"); optimised Huffman tables saved only a few per cent here
        img.save(buf, format="JPEG", quality=quality, subsampling=0)
        return buf.getvalue(), "image/jpeg"
    if fmt == "png":
        img.save(buf, format="PNG", optimize=False, compress_level=6)
        return buf.getvalue(), "image/png"
    raise ValueError(f"texture_format must be 'jpeg' or 'png', got {fmt!r}")


def _material(builder: _GlbBuilder, gltf: dict, texture, fmt: str, quality: int) -> None:
    pbr: dict = {"baseColorFactor": [1, 1, 1, 1], "metallicFactor": 0.0, "roughnessFactor": 1.0}
    if texture is not None:
        data, mime = _encode_texture(texture, fmt, quality)
        gltf["images"] = [{"bufferView": builder.view(data), "mimeType": mime}]
        gltf["samplers"] = [{"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071}]
        gltf["textures"] = [{"sampler": 0, "source": 0}]
        pbr["baseColorTexture"] = {"index": 0}
    gltf["materials"] = [
        {
            "name": "photo",
            "pbrMetallicRoughness": pbr,
            "doubleSided": True,
            "extensions": {"KHR_materials_unlit": {}},
        }
    ]
    gltf["extensionsUsed"] = ["KHR_materials_unlit"]


def glb_bytes(
    mesh: GridMesh,
    *,
    texture: np.ndarray | None = None,
    texture_format: Literal["jpeg", "png"] = "jpeg",
    jpeg_quality: int = 95,
) -> bytes:
    """The GLB file of ``mesh`` as bytes (see the module docstring for the layout).

    Args:
        mesh: the mesh; vertices in the camera frame.
        texture: (h, w, 3) uint8 photo covering the same view as the depth map, any resolution
            (sides above ``MAX_TEXTURE_SIDE`` are downscaled); colours then come from it via
            ``mesh.texture_uv()``.
        texture_format: "jpeg" (``jpeg_quality``, 4:4:4 chroma) or lossless "png".
    """
    if mesh.n_faces == 0:
        raise ValueError("the mesh has no faces: nothing to export")
    builder = _GlbBuilder()
    gltf: dict = {"asset": {"version": "2.0", "generator": "depthweb"}}
    uv_all = mesh.texture_uv() if texture is not None else None
    chunks = chunk_ranges(mesh.faces) or [(0, mesh.n_faces, 0, mesh.n_vertices)]
    primitives = []
    for f0, f1, v0, v1 in chunks:
        primitives.append(
            builder.primitive(
                mesh.vertices[v0:v1],
                mesh.colors[v0:v1],
                None if uv_all is None else uv_all[v0:v1],
                mesh.faces[f0:f1] - v0,
                material=0,
            )
        )
    _material(builder, gltf, texture, texture_format, jpeg_quality)
    gltf.update(
        {
            "scene": 0,
            "scenes": [{"nodes": [0]}],
            "nodes": [{"name": "depth_mesh", "mesh": 0, "rotation": _ROT_X_180}],
            "meshes": [{"name": "depth_mesh", "primitives": primitives}],
            "accessors": builder.accessors,
            "bufferViews": builder.views,
        }
    )
    return _pack_glb(gltf, builder.blob.getvalue())


def _pack_glb(gltf: dict, binary: bytes) -> bytes:
    """GLB container: 12-byte header, JSON chunk, BIN chunk, each padded to 4 bytes."""
    binary += b"\0" * ((-len(binary)) % 4)
    gltf["buffers"] = [{"byteLength": len(binary)}]
    header = json.dumps(gltf, separators=(",", ":")).encode("utf-8")
    header += b" " * ((-len(header)) % 4)
    total = 12 + 8 + len(header) + 8 + len(binary)
    return b"".join(
        [
            struct.pack("<4sII", b"glTF", 2, total),
            struct.pack("<I4s", len(header), b"JSON"),
            header,
            struct.pack("<I4s", len(binary), b"BIN\0"),
            binary,
        ]
    )


def write_glb(
    mesh: GridMesh,
    path: str | os.PathLike,
    *,
    texture: np.ndarray | None = None,
    texture_format: Literal["jpeg", "png"] = "jpeg",
    jpeg_quality: int = 95,
) -> int:
    """Write ``mesh`` as a GLB file atomically; returns the file size in bytes.

    See :func:`glb_bytes` for the arguments. The file renders in ``gr.Model3D`` (Babylon.js;
    tests/test_geometry_viewer.py checks it in Chromium) and loads with ``trimesh.load``.
    """
    data = glb_bytes(
        mesh, texture=texture, texture_format=texture_format, jpeg_quality=jpeg_quality
    )
    atomic_write_bytes(path, data)
    log.debug(
        "wrote %s: %d vertices, %d faces, %d bytes", path, mesh.n_vertices, mesh.n_faces, len(data)
    )
    return len(data)


def ply_bytes(mesh: GridMesh) -> bytes:
    """Binary little-endian PLY of ``mesh`` (camera frame, per-vertex RGBA colours)."""
    import trimesh

    tm = trimesh.Trimesh(
        vertices=mesh.vertices, faces=mesh.faces, vertex_colors=mesh.colors, process=False
    )
    return tm.export(file_type="ply", encoding="binary")


def write_ply(mesh: GridMesh, path: str | os.PathLike) -> int:
    """Write ``mesh`` as a binary PLY file atomically; returns the file size in bytes."""
    if mesh.n_faces == 0:
        raise ValueError("the mesh has no faces: nothing to export")
    data = ply_bytes(mesh)
    atomic_write_bytes(path, data)
    return len(data)
