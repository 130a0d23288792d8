"""GLB / PLY files: load back with trimesh, uint16 chunks, texture, size budget, atomic writes."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import trimesh
from test_geometry_scenes import make_intrinsics, plate_before_wall, render_plane

from depthweb.geometry.mesh import GLB_GRID, GridMesh, build_grid_mesh
from depthweb.geometry.meshfile import chunk_ranges, write_glb, write_ply

ROT_X_180 = np.array([1.0, -1.0, -1.0])


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth photo-like image (compresses like a photo, unlike noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(7 * x + 1), np.cos(5 * y), np.sin(3 * x * y + 2)], axis=-1)
    img = 127.5 + 100 * base + rng.normal(0, 4, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def scene_mesh(h: int, w: int, **kwargs) -> tuple[GridMesh, np.ndarray]:
    k = make_intrinsics(w, h, f=0.9 * w)
    depth = render_plane([0.2, -0.3, -1.0], 2.5, k, h, w)
    _, (r0, r1, c0, c1) = plate_before_wall(k, h, w, plate_z=1.2, wall_z=10.0)
    depth[r0 : r1 + 1, c0 : c1 + 1] = 1.2
    rgb = photo(h, w)
    return build_grid_mesh(depth, rgb, k, **kwargs), rgb


def glb_json(path) -> dict:
    data = path.read_bytes()
    magic, version, total = struct.unpack_from("<4sII", data, 0)
    assert (magic, version, total) == (b"glTF", 2, len(data))
    length, kind = struct.unpack_from("<I4s", data, 12)
    assert kind == b"JSON"
    return json.loads(data[20 : 20 + length])


def loaded_vertices(scene: trimesh.Scene) -> np.ndarray:
    return np.concatenate([g.vertices for g in scene.geometry.values()])


@pytest.mark.parametrize("textured", [False, True])
def test_glb_loads_back_with_the_same_geometry(tmp_path, textured):
    mesh, rgb = scene_mesh(300, 400, max_vertices=None)
    assert mesh.n_vertices > 65535  # several chunks
    path = tmp_path / "mesh.glb"
    size = write_glb(mesh, path, texture=rgb if textured else None)
    assert size == path.stat().st_size
    scene = trimesh.load(path)
    # chunks repeat their boundary row; distinct positions are the mesh's vertices
    assert len(np.unique(loaded_vertices(scene), axis=0)) == mesh.n_vertices
    assert sum(len(g.faces) for g in scene.geometry.values()) == mesh.n_faces
    expected = mesh.vertices * ROT_X_180  # the node turns the camera frame into glTF's y-up
    assert np.allclose(scene.bounds, [expected.min(axis=0), expected.max(axis=0)], atol=1e-6)
    # every primitive uses 16-bit indices below the primitive-restart value
    gltf = glb_json(path)
    for prim in gltf["meshes"][0]["primitives"]:
        acc = gltf["accessors"][prim["indices"]]
        assert acc["componentType"] == 5123
        assert gltf["accessors"][prim["attributes"]["POSITION"]]["count"] <= 65535
        assert ("TEXCOORD_0" in prim["attributes"]) == textured
        assert ("COLOR_0" in prim["attributes"]) != textured
    assert gltf["materials"][0]["doubleSided"] is True


def test_glb_texture_and_vertex_colours_round_trip(tmp_path):
    mesh, rgb = scene_mesh(60, 80, max_vertices=None)
    write_glb(mesh, tmp_path / "c.glb")
    geom = next(iter(trimesh.load(tmp_path / "c.glb").geometry.values()))
    # COLOR_0 next to a material: trimesh keeps the colours as a vertex attribute
    assert np.array_equal(geom.visual.vertex_attributes["color"][:, :3], mesh.colors)
    write_glb(mesh, tmp_path / "t.glb", texture=rgb, texture_format="png")
    geom = next(iter(trimesh.load(tmp_path / "t.glb").geometry.values()))
    image = np.asarray(geom.visual.material.baseColorTexture.convert("RGB"))
    assert np.array_equal(image, rgb)  # png is lossless
    uv = geom.visual.uv.copy()
    uv[:, 1] = 1.0 - uv[:, 1]  # trimesh flips v to a bottom-left origin
    assert np.allclose(uv, mesh.texture_uv(), atol=1e-7)


def test_full_resolution_export_fits_the_size_budget(tmp_path):
    """1024x768: full-resolution photo texture on a 512x384 grid stays under 10 MB."""
    mesh, rgb = scene_mesh(768, 1024, max_vertices=GLB_GRID)
    assert mesh.grid_shape == (384, 512)
    size = write_glb(mesh, tmp_path / "full.glb", texture=rgb)
    assert size < 10_000_000
    geom = next(iter(trimesh.load(tmp_path / "full.glb").geometry.values()))
    assert geom.visual.material.baseColorTexture.size == (1024, 768)  # the photo, full size


def test_uint16_chunks_beat_a_plain_export(tmp_path):
    mesh, _ = scene_mesh(300, 400, max_vertices=None)
    size = write_glb(mesh, tmp_path / "m.glb")
    plain = trimesh.Trimesh(mesh.vertices, mesh.faces, vertex_colors=mesh.colors, process=False)
    # 12 + 4 bytes per vertex and 6 per face, against 12 + 4 and 12 (uint32 faces)
    assert size < 0.75 * len(plain.export(file_type="glb"))


def test_ply_round_trip(tmp_path):
    mesh, _ = scene_mesh(50, 70, max_vertices=None)
    size = write_ply(mesh, tmp_path / "m.ply")
    assert size == (tmp_path / "m.ply").stat().st_size
    loaded = trimesh.load(tmp_path / "m.ply", process=False)
    assert np.allclose(loaded.vertices, mesh.vertices)
    assert np.array_equal(loaded.faces, mesh.faces)
    assert np.array_equal(loaded.visual.vertex_colors[:, :3], mesh.colors)


def test_writes_are_atomic(tmp_path):
    mesh, _ = scene_mesh(40, 60, max_vertices=None)
    path = tmp_path / "out.glb"
    path.write_bytes(b"old")
    write_glb(mesh, path)
    assert path.read_bytes()[:4] == b"glTF"
    empty = GridMesh(
        np.zeros((0, 3), np.float32),
        np.zeros((0, 3), np.uint8),
        np.zeros((0, 3), np.int32),
        np.zeros(0, np.int32),
        (2, 2),
        (2, 2),
    )
    before = path.read_bytes()
    with pytest.raises(ValueError, match="no faces"):
        write_glb(empty, path)
    with pytest.raises(ValueError, match="no faces"):
        write_ply(empty, tmp_path / "out.ply")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.glb"]  # no temp files left


def test_chunk_ranges_cover_all_faces_within_the_window():
    rng = np.random.default_rng(1)
    base = np.sort(rng.integers(0, 200_000, 50_000))
    faces = np.stack([base, base + rng.integers(1, 900, base.size), base + 900], axis=1)
    chunks = chunk_ranges(faces, max_vertices=65535)
    assert chunks[0][0] == 0 and chunks[-1][1] == len(faces)
    for (f0, f1, v0, v1), nxt in zip(chunks, [*chunks[1:], None], strict=True):
        block = faces[f0:f1]
        assert block.min() >= v0 and block.max() < v1 and v1 - v0 <= 65535
        if nxt is not None:
            assert nxt[0] == f1
    assert chunk_ranges(np.array([[0, 1, 70_000]]), max_vertices=65535) == []


def test_oversized_texture_is_downscaled(tmp_path):
    mesh, _ = scene_mesh(30, 40, max_vertices=None)
    wide = photo(60, 5000)
    write_glb(mesh, tmp_path / "w.glb", texture=wide)
    geom = next(iter(trimesh.load(tmp_path / "w.glb").geometry.values()))
    assert geom.visual.material.baseColorTexture.size == (4096, 49)
