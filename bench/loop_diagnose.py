"""Why did (or didn't) review help? Diagnostics on a finished loop run's work folder.

    python -m bench.bench_loop --work /tmp/loop      # the experiment, keeping its folder
    python -m bench.loop_diagnose --work /tmp/loop   # then this

1. **Label accuracy**: the aligned AbsRel of the exported labels against the exact depth, raw
   export against the fully reviewed one, on every pixel and on the pixels that train (outside
   the ignore mask); and per correction type, the mean change of the label's aligned AbsRel on
   the pixels it had before and after (read from the revisions' stored labels, read only).
2. **Ablations** (copies of the fully reviewed export, each fine-tuned with the same config and
   seeds): ``reviewed_as_pseudo``: every row marked ``pseudo``, so the corrected labels get the
   pseudo-label recipe (top-10 % loss ignore, strong perturbations, CutMix) the raw export gets
   (in the product, corrected rows train as clean labels: no trim, no perturbation);
   ``reviewed_far_ignored``: the far-filled pixels (disparity 0) made invalid, as the sky is in
   the ground truth. The copies' ``export.json`` no longer matches their manifest (a warning).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench import loop_experiment as ex
from bench.loop_reviewers import aligned_error


def _db(work: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{work / 'data' / 'depthweb.sqlite'}?mode=ro", uri=True)


def _truth(work: Path) -> dict[str, np.ndarray]:
    out = {}
    for p in (work / "truth").glob("*.npy"):
        d = np.load(p)
        out[p.stem] = np.where(np.isnan(d), np.inf, d)
    return out


def _stems(db: sqlite3.Connection) -> dict[int, str]:
    return {i: Path(n).stem for i, n in db.execute("select id, original_filename from images")}


def _export_labels(folder: Path, stems: dict[int, str]) -> dict[str, tuple]:
    from PIL import Image

    out = {}
    for line in (folder / "manifest.jsonl").open():
        row = json.loads(line)
        label = np.load(folder / row["label"]).astype(np.float64)
        mask = np.zeros(label.shape, bool)
        if row.get("mask"):
            mask = np.asarray(Image.open(folder / row["mask"])) >= 128
        out[stems[row["image_id"]]] = (label, mask)
    return out


def label_accuracy(work: Path, last: int) -> dict[str, float]:
    db, truth = _db(work), _truth(work)
    stems = _stems(db)
    root = work / "data" / "exports"
    raw = _export_labels(root / "reviewed-0", stems)
    rev = _export_labels(root / f"reviewed-{last}", stems)
    acc = defaultdict(list)
    for stem, (label, mask) in rev.items():
        depth = truth[stem]
        e_raw, _ = aligned_error(raw[stem][0], depth)
        acc["raw_all"].append(np.nanmean(e_raw))
        acc["raw_outside_mask"].append(np.nanmean(e_raw[~mask]))
        kept = label.copy()
        kept[mask] = np.nan
        acc["reviewed_outside_mask"].append(aligned_error(kept, depth)[1])
        acc["masked_fraction"].append(float(mask.mean()))
    return {k: float(np.mean(v)) for k, v in acc.items()} | {"images": len(rev)}


def correction_effects(work: Path) -> dict[str, dict[str, float]]:
    """Per correction type: mean change of aligned AbsRel (same judged pixels) and how often
    it made the label worse."""
    db, truth = _db(work), _truth(work)
    stems, data = _stems(db), work / "data"
    paths = dict(db.execute("select sha256, path from blobs"))

    def arr(sha: str) -> np.ndarray:
        p = Path(paths[sha])
        return np.load(p if p.is_absolute() else data / "blobs" / p)

    tasks = db.execute("select t.id, t.image_id, p.depth_blob_sha256 from tasks t join "
                       "predictions p on p.id = t.prediction_id join datasets d on "
                       "d.id = t.dataset_id where d.name = ?", (ex.DATASET,)).fetchall()
    change = defaultdict(list)
    for tid, image_id, teacher in tasks:
        depth = truth[stems[image_id]]
        cur = arr(teacher).astype(np.float64)
        for action, label_sha, flags_sha in db.execute(
                "select action, label_blob_sha256, flags_blob_sha256 from revisions where "
                "task_id = ? order by task_version", (tid,)):
            if action in ("approve", "reject", "note", "mask", "far_fill"):
                continue  # masks and far fills change which pixels train / sky (not scored)
            new = arr(label_sha or teacher).astype(np.float64)
            ignore = (arr(flags_sha) & 1) > 0 if flags_sha else np.zeros(new.shape, bool)
            before, after = cur.copy(), new.copy()
            before[ignore] = after[ignore] = np.nan
            eb, ea = aligned_error(before, depth)[0], aligned_error(after, depth)[0]
            ok = np.isfinite(eb) & np.isfinite(ea)
            change[action].append(float(ea[ok].mean() - eb[ok].mean()))
            cur = new
    return {k: {"n": len(v), "mean_change": float(np.mean(v)),
                "worse": int(sum(x > 0 for x in v))} for k, v in change.items()}


def _as_pseudo(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst)
    rows = [json.loads(line) for line in (src / "manifest.jsonl").open()]
    (dst / "manifest.jsonl").write_text("".join(
        json.dumps({**r, "source": "pseudo"}) + "\n" for r in rows))


def _far_ignored(src: Path, dst: Path) -> None:
    """The far-filled pixels (disparity exactly 0) become invalid (NaN), like the ground truth's
    sky; everything else as reviewed."""
    shutil.copytree(src, dst)
    for line in (src / "manifest.jsonl").open():
        path = dst / json.loads(line)["label"]
        label = np.load(path)
        np.save(path, np.where(label == 0, np.nan, label).astype(np.float32))


ABLATIONS = {"reviewed_as_pseudo": _as_pseudo, "reviewed_far_ignored": _far_ignored}


def ablation(work: Path, sizes: ex.Sizes, seeds: tuple[int, ...], kind: str) -> list[dict]:
    """Fine-tune on a modified copy of the fully reviewed export (:data:`ABLATIONS`)."""
    from depthweb.config import Settings
    from depthweb.training import registry

    settings = Settings(data_dir=work / "data", device="cpu")
    src = work / "data" / "exports" / f"reviewed-{sizes.curve[-1]}"
    dst = work / f"ablation-{kind}"
    if not dst.exists():
        ABLATIONS[kind](src, dst)
    held = ex.render_frames(work / "images" / "heldout-again", "heldout", 2002, sizes.heldout,
                            sizes)
    samples = ex.eval_samples(held)
    teacher_dir = registry.get_student(ex.TEACHER, settings).path
    out = []
    for seed in seeds:
        name = f"ablation-{kind.replace('_', '-')}-s{seed}"
        run = ex.fine_tune(settings, work, sizes, dst, name, seed, teacher_dir)
        out.append({**run, "seed": seed, **ex.evaluate(settings, name, samples)})
    return out


def main() -> None:
    import torch

    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--quick", action="store_true", help="the run was --quick")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--ablations", nargs="*", choices=list(ABLATIONS), default=list(ABLATIONS))
    args = ap.parse_args()
    sizes = ex.QUICK if args.quick else ex.FULL
    report = {"labels": label_accuracy(args.work, sizes.curve[-1]),
              "corrections": correction_effects(args.work)}
    for kind in args.ablations:
        report[kind] = ablation(args.work, sizes, tuple(args.seeds), kind)
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
