"""Time ``build_grid_mesh`` against a straightforward numpy build, and size plotly / GLB payloads.

Scenes: NYU Depth v2 frame 0 (ground truth, about 70 % valid: "sparse") and the same map with
its holes filled from the nearest valid pixel ("dense", standing in for a model prediction),
resized to each size (sparse depth nearest, dense depth bilinear, photo bicubic), intrinsics
scaled to match. Both builders
run on the same input, alternately, and must produce the same mesh. The baseline is what one
writes first: float64 meshgrids, one int64 (M, 3) face array for every quad, a per-face gather
of depths and validity, then a cumsum re-index. Prints markdown tables; writes only temp files.

    python -m bench.bench_mesh [--runs 21] [--sizes 256x192 512x384 1024x768]   # repo root
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import plotly
import plotly.graph_objects as go
import trimesh
from PIL import Image
from scipy import ndimage

from depthweb.geometry.mesh import GLB_GRID, GridMesh, build_grid_mesh, mesh_to_plotly
from depthweb.geometry.meshfile import write_glb
from depthweb.types import Intrinsics, IntrinsicsSource

NYU = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nyu"
NYU_K = (518.8579, 519.46961, 325.58245, 253.73617)  # fx, fy, cx, cy at 640x480
JUMP = 0.05


def load_scene(width: int, height: int, dense: bool) -> tuple[np.ndarray, np.ndarray, Intrinsics]:
    """NYU frame 0 at ``width`` x ``height``: depth (m, 0 = invalid), photo, intrinsics."""
    depth = np.asarray(Image.open(NYU / "depth" / "sync_depth_00000.png")).astype(np.float32)
    depth /= 1000.0
    resample = Image.Resampling.NEAREST  # never mixes valid depth with the 0 of holes
    if dense:  # fill holes from the nearest valid pixel, then resize smoothly
        holes = depth <= 0
        idx = ndimage.distance_transform_edt(holes, return_distances=False, return_indices=True)
        depth = depth[tuple(idx)]
        resample = Image.Resampling.BILINEAR
    rgb = Image.open(NYU / "rgb" / "rgb_00000.jpg").convert("RGB")
    depth = np.asarray(Image.fromarray(depth).resize((width, height), resample))
    rgb = np.asarray(rgb.resize((width, height), Image.Resampling.BICUBIC))
    s = width / 640.0
    fx, fy, cx, cy = NYU_K
    k = Intrinsics(fx * s, fy * s, cx * s, cy * s, IntrinsicsSource.CALIB)
    return depth, rgb, k


def baseline_mesh(depth, rgb, k: Intrinsics, jump: float = JUMP):
    """Straightforward numpy: per-face gathers in float64 / int64. Same output as ours."""
    h, w = depth.shape
    u, v = np.meshgrid(np.arange(w), np.arange(h))
    z = depth.astype(np.float64)
    valid = np.isfinite(z) & (z > 0)
    verts = np.stack([(u - k.cx) / k.fx * z, (v - k.cy) / k.fy * z, z], axis=-1).reshape(-1, 3)
    idx = np.arange(h * w).reshape(h, w)
    tl, tr = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel()
    bl, br = idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    faces = np.stack([np.stack([tl, bl, tr], 1), np.stack([tr, bl, br], 1)], 1).reshape(-1, 3)
    fz = z.ravel()[faces]
    ok = valid.ravel()[faces].all(axis=1)
    with np.errstate(invalid="ignore"):
        ok &= fz.max(axis=1) <= (1.0 + jump) * fz.min(axis=1)
    flat_valid = valid.ravel()
    remap = np.cumsum(flat_valid) - 1
    return verts[flat_valid], rgb.reshape(-1, 3)[flat_valid], remap[faces[ok]]


def baseline_plotly(verts, colors, faces) -> go.Figure:
    """The usual first plotly export: float64 / int64 arrays and 'rgb(r,g,b)' colour strings."""
    vertexcolor = [f"rgb({r},{g},{b})" for r, g, b in colors.tolist()]
    trace = go.Mesh3d(
        x=verts[:, 0], y=verts[:, 1], z=verts[:, 2],
        i=faces[:, 0], j=faces[:, 1], k=faces[:, 2], vertexcolor=vertexcolor,
    )  # fmt: skip
    return go.Figure(data=[trace])


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall ms, CPU ms of this process): CPU time is not inflated by other processes' load."""
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3


def alternate_medians(fns: list[Callable[[], object]], runs: int) -> list[tuple[float, float]]:
    """Median (wall ms, CPU ms) of each function; runs interleaved so load hits all alike."""
    for fn in fns:
        fn()  # warm-up (caches, lazy imports)
    times: list[list[tuple[float, float]]] = [[] for _ in fns]
    for _ in range(runs):
        for t, fn in zip(times, fns, strict=True):
            t.append(timed(fn))
    return [(statistics.median(w for w, _ in t), statistics.median(c for _, c in t)) for t in times]


def check_same(ours: GridMesh, base) -> None:
    verts, colors, faces = base
    assert np.array_equal(ours.faces, faces), "baseline and ours disagree on faces"
    assert np.array_equal(ours.colors, colors)
    assert np.allclose(ours.vertices, verts, rtol=1e-6, atol=1e-6)


def plotly_row(mesh: GridMesh, base, runs: int) -> tuple[float, float, float, float]:
    """(ours ms, base ms, ours bytes, base bytes) for figure + to_json."""
    ours_json = mesh_to_plotly(mesh).to_json()
    base_json = baseline_plotly(*base).to_json()
    (t_ours, _), (t_base, _) = alternate_medians(
        [lambda: mesh_to_plotly(mesh).to_json(), lambda: baseline_plotly(*base).to_json()], runs
    )
    return t_ours, t_base, len(ours_json), len(base_json)


def bench_size(width: int, height: int, dense: bool, runs: int) -> str:
    depth, rgb, k = load_scene(width, height, dense)
    ours = build_grid_mesh(depth, rgb, k, max_vertices=None, jump_threshold=JUMP)
    base = baseline_mesh(depth, rgb, k)
    check_same(ours, base)
    (t_ours, c_ours), (t_base, c_base) = alternate_medians(
        [
            lambda: build_grid_mesh(depth, rgb, k, max_vertices=None, jump_threshold=JUMP),
            lambda: baseline_mesh(depth, rgb, k),
        ],
        runs,
    )
    p_ours, p_base, b_ours, b_base = plotly_row(ours, base, max(3, runs // 5))
    return (
        f"| {width}x{height} | {'dense' if dense else 'sparse'} | {ours.n_vertices:,} | "
        f"{ours.n_faces:,} | {t_ours:.1f} ({c_ours:.1f}) | {t_base:.1f} ({c_base:.1f}) | "
        f"{t_base / t_ours:.1f}x | "
        f"{b_ours / 1e6:.2f} | {b_base / 1e6:.2f} | {b_base / b_ours:.1f}x | "
        f"{p_ours:.0f} | {p_base:.0f} |"
    )


def coarse_fidelity(depth: np.ndarray, mesh: GridMesh, jump: float = JUMP) -> dict[str, float]:
    """How far the stride-s mesh surface is from the full-resolution depth, per pixel.

    Each full-resolution pixel is interpolated inside its coarse triangle linearly in
    disparity (exact for the planar 3D triangle a viewer renders); only pixels whose coarse
    triangle is kept count. Returns error percentiles (relative depth) and coverage.
    """
    s, off = mesh.stride, int(mesh.offset)
    rows, cols = mesh.grid_shape
    zc = depth[off::s, off::s][:rows, :cols].astype(np.float64)
    zc[~(zc > 0)] = np.nan
    disp = 1.0 / zc
    v, u = np.mgrid[off : off + (rows - 1) * s, off : off + (cols - 1) * s]
    r, c = (v - off) // s, (u - off) // s
    a, b = (u - off - c * s) / s, (v - off - r * s) / s
    in_a = a + b <= 1.0  # triangle (tl, bl, tr), else (tr, bl, br)
    tl, tr, bl, br = disp[r, c], disp[r, c + 1], disp[r + 1, c], disp[r + 1, c + 1]
    interp = np.where(in_a, tl + a * (tr - tl) + b * (bl - tl), br + (1 - a) * (bl - br))
    interp += np.where(in_a, 0.0, (1 - b) * (tr - br))
    tri = [np.where(in_a, tl, tr), bl, np.where(in_a, tr, br)]  # disparities: same ratios
    with np.errstate(invalid="ignore"):
        kept = np.maximum.reduce(tri) <= (1 + jump) * np.minimum.reduce(tri)
    truth = depth[v, u].astype(np.float64)
    valid = truth > 0
    ok = kept & valid
    err = np.abs(1.0 / interp[ok] - truth[ok]) / truth[ok]
    return {
        "p50": float(np.percentile(err, 50)),
        "p95": float(np.percentile(err, 95)),
        "p99": float(np.percentile(err, 99)),
        "over_1pct": float(np.mean(err > 0.01)),
        "coverage": float(ok.sum() / valid.sum()),
    }


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse)) if mse > 0 else float("inf")


def glb_rows(dense: bool, folder: Path) -> list[str]:
    """GLB sizes for a 1024x768 map: trimesh's plain export against our layouts."""
    depth, rgb, k = load_scene(1024, 768, dense)
    full = build_grid_mesh(depth, rgb, k, max_vertices=None)
    grid = build_grid_mesh(depth, rgb, k, max_vertices=GLB_GRID)
    plain = trimesh.Trimesh(full.vertices, full.faces, vertex_colors=full.colors, process=False)
    variants = [
        ("trimesh export, full grid, uint32, vertex colours", None, None),
        ("ours, full grid, uint16 chunks, vertex colours", full, None),
        ("ours, 512x384 grid + 1024x768 JPEG q95 texture", grid, "jpeg"),
        ("ours, 512x384 grid + 1024x768 PNG texture", grid, "png"),
    ]
    rows = []
    for name, mesh, fmt in variants:
        path = folder / "m.glb"
        t0 = time.perf_counter()
        if mesh is None:
            size = len(plain.export(file_type="glb"))
            n_vertices = len(plain.vertices)
        else:
            texture = rgb if fmt else None
            size = write_glb(mesh, path, texture=texture, texture_format=fmt or "jpeg")
            n_vertices = mesh.n_vertices
        ms = (time.perf_counter() - t0) * 1e3
        extra = ""
        if mesh is not None:
            loaded = trimesh.load(path)
            distinct = len(
                np.unique(np.concatenate([g.vertices for g in loaded.geometry.values()]), axis=0)
            )
            assert distinct == mesh.n_vertices, (distinct, mesh.n_vertices)
            extra = "loads in trimesh, vertex count ok"
            if fmt:
                geom = next(iter(loaded.geometry.values()))
                tex = np.asarray(geom.visual.material.baseColorTexture.convert("RGB"))
                extra += f", texture PSNR {psnr(tex, rgb):.1f} dB"
        rows.append(f"| {name} | {n_vertices:,} | {size / 1e6:.2f} | {ms:.0f} | {extra} |")
    fid = coarse_fidelity(depth, grid)
    used = np.unique(full.faces).size / full.n_vertices
    rows.append(
        f"\n512x384 grid vs full-resolution depth ({'dense' if dense else 'sparse'}): relative "
        f"depth error p50 {fid['p50']:.2%}, p95 {fid['p95']:.2%}, p99 {fid['p99']:.2%}; "
        f"{fid['over_1pct']:.2%} of pixels off by more than 1 %; "
        f"{fid['coverage']:.1%} of valid pixels lie in kept triangles "
        f"(full grid: {used:.1%} of valid pixels are corners of kept triangles)."
    )
    return rows


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if "model name" in line)
    except (OSError, StopIteration):
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy "
        f"{np.__version__}, plotly {plotly.__version__}, "
        f"trimesh {trimesh.__version__}; load average {load}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--sizes", nargs="+", default=["256x192", "512x384", "1024x768"])
    args = ap.parse_args()
    print(f"date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"machine: {machine()}\n")
    print(
        "| mesh | depth | vertices | faces | ours ms (cpu) | baseline ms (cpu) | speed-up | "
        "plotly MB ours | plotly MB baseline | smaller | plotly ms ours | plotly ms base |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        w, h = (int(x) for x in size.split("x"))
        for dense in (True, False):
            print(bench_size(w, h, dense, args.runs), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for dense in (True, False):
            print(f"\nGLB, 1024x768 {'dense' if dense else 'sparse'} map:\n")
            print("| layout | vertices | MB | write ms | check |")
            print("|---|---:|---:|---:|---|")
            print("\n".join(glb_rows(dense, Path(tmp))), flush=True)
    print(f"\nload average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
