"""Pseudo-labelling throughput: the pipelined in-process job and the Ray job against a plain
per-image loop, on the 13 real images and on generated ones.

Datasets: the real photos from ``../shared/data`` (3 NYU 640x480, 3 KITTI 1242x375 and the
seven wild photos up to 1978x1287, imported in that order), and ``--generated N`` rendered
synthetic scenes (240x320, ``depthweb.training.synthetic``). A tiny random-weight Depth Anything
V2 (``tests/builders.py``) labels them on the CPU, each run on a fresh copy of one migrated
SQLite database and blob store (made once per dataset), so every run labels every image.
Timed: the labelling call only (decode, model, uncertainty, blob writes, commits); the model is
loaded once before (the Ray job loads it in its actors, inside the timed call).

1. ``pseudo_label(batch_size=8)`` against ``pseudo_label(batch_size=1)``: the same service,
   flip uncertainty on (two forward passes per image).
2. ``pseudo_label(batch_size=8, uncertainty="none")`` (pipelined: decode threads, the model,
   a writer thread) against a plain per-image loop written with the public pieces (decode,
   ``backend.infer_image``, ``put_array``, ``add_prediction`` + ``ensure_task`` in one
   transaction per image): today's loop before the pipeline.
3. ``pseudo_label_ray(workers=2, batch_size=8, uncertainty="none")`` on a local Ray with 2
   CPUs against the in-process job of 2.; ``ray.init`` is timed apart (start-up), and the
   job's own actor start-up and model loads are inside its time.

Images per CPU-second: this process (all threads) for the in-process variants; for Ray, this
process plus every process below it (raylet, workers, actors). Prints a table; writes only temp
files.

    python -m bench.bench_pseudo_label [--repeats 3] [--batch-size 8] [--generated 500] [--ray]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.common import DATA, REPO, Row, Section, fmt_num, load_average, markdown_table, median

MODEL = "depth-anything-v2-small"
DATASET = "bench"


def real_images(quick: bool = False) -> list[Path]:
    """NYU, then KITTI, then wild photos (same-shape frames next to each other); quick: NYU."""
    found = sorted((DATA / "nyu" / "rgb").glob("*.jpg"))
    if not quick:
        found += sorted((DATA / "kitti" / "rgb").glob("*.png"))
        found += sorted((DATA / "wild").glob("*.jpg"))
    if not found:
        raise FileNotFoundError(f"no real images under {DATA}")
    return found


def _settings(data_dir: Path):
    from depthweb.config import Settings

    return Settings(data_dir=data_dir, output_dir=data_dir.parent / "outputs", device="cpu")


def generated_images(folder: Path, n: int, h: int = 240, w: int = 320) -> list[Path]:
    """``n`` rendered scenes (rooms and streets, seeds 0..n-1) as PNG files in ``folder``."""
    import cv2

    from depthweb.training.synthetic import render_scene

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in range(n):
        path = folder / f"scene{seed:04d}.png"
        cv2.imwrite(str(path), render_scene(seed, h, w).rgb[..., ::-1])
        paths.append(path)
    return paths


def make_template(root: Path, files: list[Path], name: str = "template") -> Path:
    """A migrated database + blob store under ``root/<name>`` holding ``files``."""
    from depthweb.services.review import ReviewContext, import_images
    from depthweb.store import SYSTEM, upgrade

    data_dir = root / name
    settings = _settings(data_dir)
    upgrade(settings.resolved_database_url)
    with ReviewContext.from_settings(settings) as ctx:
        report = import_images(ctx, files, dataset=DATASET, user=SYSTEM)
    if report.added != len(files):
        raise RuntimeError(f"import failed: {report.summary()}")
    return data_dir


def plain_loop(ctx, backend, weights_label: str) -> int:
    """Label every image of the dataset one by one with the public pieces; returns the count."""
    from sqlalchemy import select

    from depthweb.geometry.intrinsics import resolve_intrinsics
    from depthweb.imaging import load_image
    from depthweb.store import SYSTEM, BlobRef
    from depthweb.store.models import Dataset, Image
    from depthweb.store.repo import add_prediction, ensure_task

    with ctx.session(readonly=True) as s:
        ds_id = s.scalar(select(Dataset.id).where(Dataset.name == DATASET))
        todo = [(im.id, BlobRef.from_row(im.blob), im.exif_focal_35mm) for im in
                s.scalars(select(Image).where(Image.dataset_id == ds_id).order_by(Image.id))]
    for image_id, blob, focal in todo:
        loaded = load_image(ctx.store.get_bytes(blob))
        cam = resolve_intrinsics(loaded.width, loaded.height, exif_focal_35mm=focal)
        result = backend.infer_image(loaded.rgb, cam)
        ref = ctx.store.put_array(np.where(result.valid_mask, result.depth, np.nan)
                                  .astype(np.float32))
        with ctx.session() as s:
            pred, _ = add_prediction(session=s, user=SYSTEM, image_id=image_id, model=MODEL,
                                     weights=weights_label, kind=result.kind,
                                     intrinsics=result.intrinsics, depth=ref, store=ctx.store)
            ensure_task(session=s, user=SYSTEM, image_id=image_id, prediction_id=pred.id)
    return len(todo)


def _tree_cpu() -> float:
    """CPU seconds of this process and every process below it (Ray's raylet and workers)."""
    import psutil

    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.Error:
            continue
    return total


def timed_run(template: Path, work: Path, label: Callable[[object], int],
              tree: bool = False) -> tuple[float, float]:
    """Images per wall second and per CPU second (this process, all its threads, or with
    ``tree`` also its child processes; waiting for a core does not count) of ``label(ctx)`` on
    a fresh copy of ``template``."""
    from depthweb.services.review import ReviewContext

    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(template, work)
    cpu_now = _tree_cpu if tree else time.process_time
    with ReviewContext.from_settings(_settings(work)) as ctx:
        c0, t0 = cpu_now(), time.perf_counter()
        n = label(ctx)
        seconds, cpu = time.perf_counter() - t0, cpu_now() - c0
    if n <= 0:
        raise RuntimeError("nothing was labelled")
    return n / seconds, n / cpu


Rates = dict[str, tuple[float, float]]


def _variants(weights: str, backend, batch_size: int, flip: bool, ray: bool) -> dict:
    from depthweb.services.review import pseudo_label
    from depthweb.store import SYSTEM

    def service(batch: int, uncertainty: str) -> Callable[[object], int]:
        return lambda ctx: pseudo_label(ctx, DATASET, MODEL, user=SYSTEM, weights=weights,
                                        device="cpu", batch_size=batch,
                                        uncertainty=uncertainty).labelled

    variants: dict[str, Callable[[object], int]] = {}
    if flip:
        variants |= {"batch_flip": service(batch_size, "flip"), "single_flip": service(1, "flip")}
    variants |= {"batch_none": service(batch_size, "none"),
                 "plain_loop": lambda ctx: plain_loop(ctx, backend, backend.weights_label)}
    if ray:
        from depthweb.services.review.pseudolabel_ray import pseudo_label_ray

        variants["ray_none"] = lambda ctx: pseudo_label_ray(
            ctx, DATASET, MODEL, user=SYSTEM, weights=weights, device="cpu",
            batch_size=batch_size, uncertainty="none", workers=2).labelled
    return variants


def measure(files: list[Path], repeats: int, batch_size: int, *, flip: bool = True,
            ray: bool = False, root: Path | None = None) -> Rates:
    """Median (images per wall second, per CPU second) of each variant, interleaved."""
    sys.path.insert(0, str(REPO / "tests"))
    from builders import build_tiny_depth_anything

    from depthweb.models.registry import clear_cache, load_backend

    with tempfile.TemporaryDirectory(prefix="bench-pseudo-") as tmp:
        root = Path(tmp)
        weights = str(build_tiny_depth_anything(root / "model"))
        template = make_template(root, files)
        clear_cache()
        backend = load_backend(MODEL, weights, device="cpu")  # loaded once, cached
        variants = _variants(weights, backend, batch_size, flip, ray)
        rates: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
        backend.infer_batch([np.zeros((480, 640, 3), np.uint8)] * 2)  # warm-up
        for _ in range(repeats):
            for key, fn in variants.items():
                rates[key].append(timed_run(template, root / "work", fn, key.startswith("ray")))
        clear_cache()
    return {k: (median(w for w, _ in v), median(c for _, c in v)) for k, v in rates.items()}


def start_ray() -> float:
    """Start a local Ray with 2 CPUs (no dashboard) in this process; returns the seconds."""
    import logging

    import ray

    t0 = time.perf_counter()
    for attempt in range(3):
        try:
            ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
                     log_to_driver=False)
            break
        except Exception:  # Ray waits only 30 s for its raylet: a loaded machine misses that
            ray.shutdown()
            if attempt == 2:
                raise
    return time.perf_counter() - t0


def _ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def _row(name: str, ours: tuple[float, float], base: tuple[float, float], base_name: str) -> Row:
    return Row(name, ours[0], base[0], "images/s", better="higher", baseline_name=base_name,
               notes=f"per CPU-second {ours[1]:.2f} vs {base[1]:.2f} ({ours[1] / base[1]:.2f}x)")


LABELS = {"batch_flip": "`pseudo_label(batch_size={b})`, flip",
          "single_flip": "`pseudo_label(batch_size=1)`, flip (baseline)",
          "batch_none": "`pseudo_label(batch_size={b}, uncertainty='none')`, pipelined",
          "plain_loop": "plain per-image loop, no uncertainty (baseline)",
          "ray_none": "`pseudo_label_ray(workers=2, batch_size={b}, uncertainty='none')`"}


def _table(r: Rates, batch_size: int) -> str:
    return markdown_table(["variant", "images / wall s", "images / CPU s"],
                          [[LABELS[k].format(b=batch_size), fmt_num(w), fmt_num(c)]
                           for k, (w, c) in r.items()], "lrr")


def run(quick: bool = False, batch_size: int = 8, generated: int = 500,
        ray: bool | None = None) -> Section:
    """Summary rows and detail for ``python -m bench`` (quick: 3 NYU images, 1 repeat, no
    generated images, no Ray)."""
    files = real_images(quick)
    repeats = 1 if quick else 3
    generated = 0 if quick else generated
    ray = (not quick and _ray_available()) if ray is None else ray
    real = measure(files, repeats, batch_size)
    n = len(files)
    rows = [
        _row(f"pseudo-label: batch {batch_size}, flip uncertainty ({n} real images)",
             real["batch_flip"], real["single_flip"], "same service, batch_size=1"),
        _row(f"pseudo-label: pipelined, batch {batch_size}, no uncertainty ({n} real images)",
             real["batch_none"], real["plain_loop"],
             "plain per-image loop (decode, infer_image, store, commit)"),
    ]
    detail = (f"{n} real images, tiny random-weight DA-V2 on the CPU, fresh SQLite copy per "
              f"run, {repeats} repeat(s) per variant, interleaved; medians.\n\n"
              f"{_table(real, batch_size)}")
    ray_init = start_ray() if ray and generated else None
    if generated:
        with tempfile.TemporaryDirectory(prefix="bench-gen-") as tmp:
            gen = measure(generated_images(Path(tmp), generated), 1, batch_size, flip=False,
                          ray=ray_init is not None)
        rows.append(_row(f"pseudo-label: pipelined, batch {batch_size}, no uncertainty "
                         f"({generated} generated 240x320)", gen["batch_none"],
                         gen["plain_loop"], "plain per-image loop"))
        if "ray_none" in gen:
            rows.append(_row(f"pseudo-label on Ray, 2 workers ({generated} generated)",
                             gen["ray_none"], gen["batch_none"],
                             f"in-process pipelined job; ray.init {ray_init:.1f} s apart"))
        detail += (f"\n\n{generated} generated scenes (240x320), one run per variant"
                   f"{f'; local Ray (2 CPUs) started once in {ray_init:.1f} s' if ray_init else ''}"
                   f":\n\n{_table(gen, batch_size)}")
    return Section("pseudo_label", "Pseudo-labelling: pipelined, on Ray, vs a per-image loop",
                   f"python -m bench.bench_pseudo_label --repeats {repeats} --batch-size "
                   f"{batch_size} --generated {generated}{' --ray' if ray else ''}", rows,
                   detail)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--generated", type=int, default=0, help="also this many generated images")
    ap.add_argument("--ray", action="store_true", help="also the Ray job (on generated images)")
    ap.add_argument("--quick", action="store_true", help="3 NYU images, one repeat")
    ap.add_argument("--no-real", action="store_true", help="skip the real images")
    args = ap.parse_args()
    print(f"load average before: {load_average()}", flush=True)
    if not args.no_real:
        files = real_images(args.quick)
        r = measure(files, 1 if args.quick else args.repeats, args.batch_size)
        print(f"{len(files)} real images; images per wall second, per CPU second (medians):")
        _print(r)
    if args.generated:
        ray_init = start_ray() if args.ray else None
        if ray_init is not None:
            print(f"ray.init (local, 2 CPUs): {ray_init:.1f} s", flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-gen-") as tmp:
            gen = measure(generated_images(Path(tmp), args.generated), 1, args.batch_size,
                          flip=False, ray=ray_init is not None)
        print(f"{args.generated} generated images (one run each):")
        _print(gen)
    print(f"load average after: {load_average()}")


def _print(r: Rates) -> None:
    for key, (wall, cpu) in r.items():
        print(f"  {key:<12} {wall:8.2f} {cpu:8.2f}")
    if "batch_flip" in r:
        print(f"  batch / single (flip): {r['batch_flip'][0] / r['single_flip'][0]:.2f}x")
    print(f"  pipelined / plain loop: {r['batch_none'][0] / r['plain_loop'][0]:.2f}x wall, "
          f"{r['batch_none'][1] / r['plain_loop'][1]:.2f}x CPU")
    if "ray_none" in r:
        print(f"  ray / in-process: {r['ray_none'][0] / r['batch_none'][0]:.2f}x wall")


if __name__ == "__main__":
    main()
