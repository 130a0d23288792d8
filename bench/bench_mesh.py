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

from bench.common import Row, Section
from depthweb.geometry.mesh import GLB_GRID, GridMesh, build_grid_mesh
from depthweb.geometry.meshfile import write_glb
from depthweb.services.mesh_figure import mesh_to_plotly
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


def bench_size(width: int, height: int, dense: bool, runs: int) -> dict[str, float]:
    """Build and plotly timings (ms, medians) and payloads (bytes) for one size and scene."""
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
    return {
        "width": width, "height": height, "dense": dense, "vertices": ours.n_vertices,
        "faces": ours.n_faces, "build_ms": t_ours, "build_cpu_ms": c_ours,
        "base_ms": t_base, "base_cpu_ms": c_base, "plotly_ms": p_ours, "plotly_base_ms": p_base,
        "plotly_bytes": b_ours, "plotly_base_bytes": b_base,
    }


def size_row(r: dict[str, float]) -> str:
    return (
        f"| {r['width']}x{r['height']} | {'dense' if r['dense'] else 'sparse'} | "
        f"{r['vertices']:,} | {r['faces']:,} | {r['build_ms']:.1f} ({r['build_cpu_ms']:.1f}) | "
        f"{r['base_ms']:.1f} ({r['base_cpu_ms']:.1f}) | {r['base_ms'] / r['build_ms']:.1f}x | "
        f"{r['plotly_bytes'] / 1e6:.2f} | {r['plotly_base_bytes'] / 1e6:.2f} | "
        f"{r['plotly_base_bytes'] / r['plotly_bytes']:.1f}x | "
        f"{r['plotly_ms']:.0f} | {r['plotly_base_ms']:.0f} |"
    )


SIZE_HEADER = (
    "| mesh | depth | vertices | faces | ours ms (cpu) | baseline ms (cpu) | speed-up | "
    "plotly MB ours | plotly MB baseline | smaller | plotly ms ours | plotly ms base |\n"
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)
GLB_HEADER = "| layout | vertices | MB | write ms | check |\n|---|---:|---:|---:|---|"


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


def check_glb(path: Path, mesh: GridMesh, texture: np.ndarray | None) -> str:
    """Reload a written GLB with trimesh; assert the vertex count, measure the texture PSNR."""
    loaded = trimesh.load(path)
    distinct = len(
        np.unique(np.concatenate([g.vertices for g in loaded.geometry.values()]), axis=0)
    )
    assert distinct == mesh.n_vertices, (distinct, mesh.n_vertices)
    extra = "loads in trimesh, vertex count ok"
    if texture is not None:
        geom = next(iter(loaded.geometry.values()))
        tex = np.asarray(geom.visual.material.baseColorTexture.convert("RGB"))
        extra += f", texture PSNR {psnr(tex, texture):.1f} dB"
    return extra


def glb_rows(dense: bool, folder: Path) -> tuple[list[str], dict[str, int]]:
    """GLB sizes for a 1024x768 map: trimesh's plain export against our layouts.

    Returns markdown lines and the byte sizes by variant ("plain", "full", "jpeg", "png").
    """
    depth, rgb, k = load_scene(1024, 768, dense)
    full = build_grid_mesh(depth, rgb, k, max_vertices=None)
    grid = build_grid_mesh(depth, rgb, k, max_vertices=GLB_GRID)
    plain = trimesh.Trimesh(full.vertices, full.faces, vertex_colors=full.colors, process=False)
    variants = [
        ("plain", "trimesh export, full grid, uint32, vertex colours", None, None),
        ("full", "ours, full grid, uint16 chunks, vertex colours", full, None),
        ("jpeg", "ours, 512x384 grid + 1024x768 JPEG q95 texture", grid, "jpeg"),
        ("png", "ours, 512x384 grid + 1024x768 PNG texture", grid, "png"),
    ]
    rows, sizes = [], {}
    for key, name, mesh, fmt in variants:
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
        extra = "" if mesh is None else check_glb(path, mesh, rgb if fmt else None)
        sizes[key] = size
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
    return rows, sizes


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


def measure(sizes: list[str], runs: int, glb_scenes: tuple[bool, ...]) -> tuple[
        list[dict[str, float]], dict[bool, tuple[list[str], dict[str, int]]]]:
    """Build/plotly results per (size, scene), then GLB lines and sizes per scene (dense?)."""
    results = []
    for size in sizes:
        w, h = (int(x) for x in size.split("x"))
        for dense in (True, False):
            results.append(bench_size(w, h, dense, runs))
    with tempfile.TemporaryDirectory() as tmp:
        glbs = {dense: glb_rows(dense, Path(tmp)) for dense in glb_scenes}
    return results, glbs


def summary_rows(results: list[dict[str, float]], glb_sizes: dict[str, int]) -> list[Row]:
    big = max((r for r in results if r["dense"]), key=lambda r: r["vertices"])
    small = min((r for r in results if r["dense"]), key=lambda r: r["vertices"])
    tag = f"{big['width']}x{big['height']} dense"
    ptag = f"{small['width']}x{small['height']} dense"
    plain = "straightforward numpy build (float64 meshgrids, int64 faces, per-face gathers)"
    fig = "plain go.Mesh3d (float64/int64 lists, 'rgb()' colour strings)"
    rows = [
        Row(f"mesh: build {tag} (vertices, colours, faces, cut)", big["build_ms"],
            big["base_ms"], "ms", baseline_name=plain),
        Row(f"mesh: plotly payload {ptag}", small["plotly_bytes"] / 1e6,
            small["plotly_base_bytes"] / 1e6, "MB", baseline_name=fig),
        Row(f"mesh: plotly figure + to_json {ptag}", small["plotly_ms"],
            small["plotly_base_ms"], "ms", baseline_name=fig),
    ]
    if glb_sizes:
        rows.append(Row("mesh: full-resolution GLB 1024x768 dense", glb_sizes["jpeg"] / 1e6,
                        glb_sizes["plain"] / 1e6, "MB", baseline_name="trimesh plain export",
                        notes="512x384 grid + JPEG texture"))
    return rows


def run(quick: bool = False) -> Section:
    """Summary rows and detail for ``python -m bench`` (quick: 256x192 only, dense GLB)."""
    sizes = ["256x192"] if quick else ["256x192", "512x384", "1024x768"]
    runs = 3 if quick else 21
    results, glbs = measure(sizes, runs, (True,) if quick else (True, False))
    parts = [SIZE_HEADER, *map(size_row, results)]
    for dense, (lines, _) in glbs.items():
        parts += [f"\nGLB, 1024x768 {'dense' if dense else 'sparse'} map:\n", GLB_HEADER, *lines]
    detail = f"Median of {runs} interleaved runs per builder.\n\n" + "\n".join(parts)
    command = f"python -m bench.bench_mesh --runs {runs} --sizes {' '.join(sizes)}"
    return Section("mesh", "Meshes: build time, plotly payload, GLB size", command,
                   summary_rows(results, glbs.get(True, ({}, {}))[1]), detail)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--sizes", nargs="+", default=["256x192", "512x384", "1024x768"])
    args = ap.parse_args()
    print(f"date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"machine: {machine()}\n")
    print(SIZE_HEADER)
    for size in args.sizes:
        w, h = (int(x) for x in size.split("x"))
        for dense in (True, False):
            print(size_row(bench_size(w, h, dense, args.runs)), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for dense in (True, False):
            print(f"\nGLB, 1024x768 {'dense' if dense else 'sparse'} map:\n")
            print(GLB_HEADER)
            print("\n".join(glb_rows(dense, Path(tmp))[0]), flush=True)
    print(f"\nload average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
