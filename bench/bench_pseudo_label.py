"""Batch pseudo-labelling throughput against a per-image loop, on real images.

A dataset of real photos from ``../shared/data`` (3 NYU 640x480, 3 KITTI 1242x375 and the
seven wild photos up to 1978x1287, imported in that order) is pseudo-labelled by a tiny
random-weight Depth Anything V2 (``tests/builders.py``) on the CPU, each run on a fresh copy of
one migrated SQLite database and blob store (made once with ``depthweb.store.upgrade`` and
``import_images``), so every run labels every image. Timed: the labelling call only (decode,
model, uncertainty, blob writes, commits); the model is loaded once before.

1. ``pseudo_label(batch_size=8)`` against ``pseudo_label(batch_size=1)``: the same service,
   flip uncertainty on (two forward passes per image).
2. ``pseudo_label(batch_size=8, uncertainty="none")`` against a plain per-image loop written
   with the public pieces (decode, ``backend.infer_image``, ``put_array``, ``add_prediction`` +
   ``ensure_task`` in one transaction per image).

Batches are grouped by image shape (one forward pass per shape), so mixed photo sizes batch
less than a camera's frames would. Prints a table; writes only temp files.

    python -m bench.bench_pseudo_label [--repeats 3] [--batch-size 8]     # from the repo root
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

from bench.common import DATA, REPO, Row, Section, fmt_num, markdown_table, median

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


def make_template(root: Path, files: list[Path]) -> Path:
    """A migrated database + blob store under ``root/template`` holding ``files``."""
    from depthweb.services.review import ReviewContext, import_images
    from depthweb.store import SYSTEM, upgrade

    data_dir = root / "template"
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


def timed_run(template: Path, work: Path, label: Callable[[object], int]) -> tuple[float, float]:
    """Images per wall second and per CPU second of this process (all its threads; waiting for
    a core does not count) of ``label(ctx)`` on a fresh copy of ``template``."""
    from depthweb.services.review import ReviewContext

    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(template, work)
    with ReviewContext.from_settings(_settings(work)) as ctx:
        c0, t0 = time.process_time(), time.perf_counter()
        n = label(ctx)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    if n <= 0:
        raise RuntimeError("nothing was labelled")
    return n / seconds, n / cpu


def measure(files: list[Path], repeats: int, batch_size: int) -> dict[str, tuple[float, float]]:
    """Median (images per wall second, per CPU second) of each variant, interleaved."""
    sys.path.insert(0, str(REPO / "tests"))
    from builders import build_tiny_depth_anything

    from depthweb.models.registry import clear_cache, load_backend
    from depthweb.services.review import pseudo_label
    from depthweb.store import SYSTEM

    with tempfile.TemporaryDirectory(prefix="bench-pseudo-") as tmp:
        root = Path(tmp)
        weights = str(build_tiny_depth_anything(root / "model"))
        template = make_template(root, files)
        clear_cache()
        backend = load_backend(MODEL, weights, device="cpu")  # loaded once, cached

        def service(batch: int, uncertainty: str) -> Callable[[object], int]:
            return lambda ctx: pseudo_label(ctx, DATASET, MODEL, user=SYSTEM, weights=weights,
                                            device="cpu", batch_size=batch,
                                            uncertainty=uncertainty).labelled

        variants = {
            "batch_flip": service(batch_size, "flip"), "single_flip": service(1, "flip"),
            "batch_none": service(batch_size, "none"),
            "plain_loop": lambda ctx: plain_loop(ctx, backend, backend.weights_label),
        }
        rates: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
        backend.infer_batch([np.zeros((480, 640, 3), np.uint8)] * 2)  # warm-up
        for _ in range(repeats):
            for key, fn in variants.items():
                rates[key].append(timed_run(template, root / "work", fn))
        clear_cache()
    return {k: (median(w for w, _ in v), median(c for _, c in v)) for k, v in rates.items()}


def _row(name: str, ours: tuple[float, float], base: tuple[float, float], base_name: str) -> Row:
    return Row(name, ours[0], base[0], "images/s", better="higher", baseline_name=base_name,
               notes=f"per CPU-second {ours[1]:.2f} vs {base[1]:.2f} ({ours[1] / base[1]:.2f}x)")


def run(quick: bool = False, batch_size: int = 8) -> Section:
    """Summary rows and detail for ``python -m bench`` (quick: 3 NYU images, 1 repeat)."""
    files = real_images(quick)
    repeats = 1 if quick else 3
    r = measure(files, repeats, batch_size)
    n = len(files)
    rows = [
        _row(f"pseudo-label: batch {batch_size}, flip uncertainty ({n} real images)",
             r["batch_flip"], r["single_flip"], "same service, batch_size=1"),
        _row(f"pseudo-label: batch {batch_size}, no uncertainty ({n} real images)",
             r["batch_none"], r["plain_loop"],
             "plain per-image loop (decode, infer_image, store, commit)"),
    ]
    labels = {"batch_flip": f"`pseudo_label(batch_size={batch_size})`, flip",
              "single_flip": "`pseudo_label(batch_size=1)`, flip (baseline)",
              "batch_none": f"`pseudo_label(batch_size={batch_size}, uncertainty='none')`",
              "plain_loop": "plain per-image loop, no uncertainty (baseline)"}
    table = markdown_table(["variant", "images / wall s", "images / CPU s"],
                           [[labels[k], fmt_num(w), fmt_num(c)] for k, (w, c) in r.items()],
                           "lrr")
    detail = (f"{n} real images, tiny random-weight DA-V2 on the CPU, fresh SQLite copy per "
              f"run, {repeats} repeat(s) per variant, interleaved; medians.\n\n{table}")
    return Section("pseudo_label", "Batch pseudo-labelling vs a per-image loop",
                   f"python -m bench.bench_pseudo_label --repeats {repeats} "
                   f"--batch-size {batch_size}", rows, detail)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--quick", action="store_true", help="3 NYU images, one repeat")
    args = ap.parse_args()
    files = real_images(args.quick)
    r = measure(files, 1 if args.quick else args.repeats, args.batch_size)
    print(f"{len(files)} real images; images per wall second, per CPU second (medians):")
    for key, (wall, cpu) in r.items():
        print(f"  {key:<12} {wall:8.2f} {cpu:8.2f}")
    print(f"batch / single (flip): {r['batch_flip'][0] / r['single_flip'][0]:.2f}x; "
          f"batch (none) / plain loop: {r['batch_none'][0] / r['plain_loop'][0]:.2f}x")


if __name__ == "__main__":
    main()
