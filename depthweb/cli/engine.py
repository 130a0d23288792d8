"""Depth-engine commands: ``models``, ``download``, ``predict``, ``stereo``."""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path

from depthweb.errors import DepthwebError, InputError
from depthweb.imaging import display_name


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list models: kind, source, licence, cached or not")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("download", help="fetch model weights into the Hugging Face cache")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("predict", help="predict depth for images and write raw exports")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    add_model_options(p, required=False)
    p.add_argument("--focal-px", type=float, help="known focal length in pixels")
    p.add_argument("--focal-35mm", type=float, help="known focal length, 35 mm equivalent")
    p.add_argument("--fov-deg", type=float, help="known horizontal field of view in degrees")
    p.add_argument("-o", "--out", type=Path, required=True, metavar="OUTDIR")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("stereo", help="depth from a stereo pair (OpenCV SGBM), rectifying it "
                       "first when it is not rectified")
    p.add_argument("left", type=Path)
    p.add_argument("right", type=Path)
    p.add_argument("--calib", type=Path, help="Middlebury calib.txt (rectified pair), or a "
                   "two-camera calibration to rectify with: OpenCV YAML (K1 D1 K2 D2 R T) or "
                   "KITTI calib_cam_to_cam.txt")
    p.add_argument("--rectify", action="store_true", help="the pair is not rectified and has "
                   "no calibration: rectify it from matched features")
    p.add_argument("--no-focal", action="store_true", help="with --rectify: no usable focal "
                   "length (fundamental matrix, disparity only)")
    p.add_argument("--focal-px", type=float, help="focal length in pixels (with --baseline-m; "
                   "with --rectify, else EXIF or the assumed FOV)")
    p.add_argument("--baseline-m", type=float, help="baseline in metres (with --rectify: "
                   "makes the depth metric)")
    p.add_argument("--doffs", type=float, default=0.0, help="x difference of principal points, px")
    p.add_argument("-o", "--out", type=Path, required=True, metavar="OUTDIR")
    p.set_defaults(func=cmd_stereo)


def add_model_options(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    """``-m/--weights/--device``: shared by predict, pseudo-label and eval (``-m`` is optional
    only where a default makes sense: ``predict``)."""
    default = ("; default: the configured default model if its weights are here, else the "
               "bundled depthweb-student") if not required else ""
    p.add_argument("-m", "--model", required=required,
                   help=f"model name (see `depthweb models`){default}")
    p.add_argument("--weights", help="local weights directory/file or hub id[@revision]")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: settings)")


def cmd_models(args: argparse.Namespace) -> int:
    from depthweb.models.loading import is_available
    from depthweb.models.registry import list_specs

    rows = [
        {
            "name": s.name, "family": s.family, "kind": str(s.kind), "source": s.source,
            "pinned": s.pinned, "licence": s.licence, "cached": is_available(s),
            "description": s.description,
        }
        for s in list_specs()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    cols = ("name", "family", "kind", "licence", "cached", "source")
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in cols))
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from depthweb.models.loading import download
    from depthweb.models.registry import get_spec

    specs = [get_spec(n) for n in args.names]  # all names checked before any download
    for spec in specs:
        resolved = download(spec)
        print(f"{spec.name}: {resolved.path}")
    return 0


def file_error(exc: OSError) -> DepthwebError:
    """A file-system failure (an output folder that is a file, a full disk, a name too long)
    as one sentence naming the file."""
    where = f" ({display_name(str(exc.filename))})" if exc.filename else ""
    return DepthwebError(f"File error{where}: {exc.strerror or exc}.")


def file_errors(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A command whose file-system failures become :func:`file_error` sentences."""

    @functools.wraps(fn)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except OSError as exc:
            raise file_error(exc) from exc

    return wrapper


def _progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=total < 2 or not sys.stderr.isatty())


def cmd_predict(args: argparse.Namespace) -> int:
    from depthweb.services.predict import CameraHint, predict_files, resolve_model

    camera = CameraHint(focal_px=args.focal_px, fov_deg=args.fov_deg, focal_35mm=args.focal_35mm)
    if not args.model:
        args.model, why = resolve_model(None)
        print(f"model: {args.model} ({why}; choose another with -m)")
    with _progress(len(args.images), f"predict {args.model}") as bar:
        outcomes = predict_files(
            args.images, args.model, args.out, weights=args.weights, camera=camera,
            device=args.device, on_progress=lambda _o: bar.update(1),
        )
    failed = 0
    for o in outcomes:
        if o.error:
            failed += 1
            print(f"error: {o.error}", file=sys.stderr)
        else:
            r = o.result
            target = display_name(str(o.files[0].with_suffix("")))
            print(f"{display_name(o.path.name)}: {r.kind} {r.width}x{r.height} -> {target}.*")
    return 1 if failed else 0


@file_errors
def cmd_stereo(args: argparse.Namespace) -> int:
    import cv2

    from depthweb.config import get_settings
    from depthweb.services.export import npy_bytes, write_outputs
    from depthweb.services.stereo_service import calibration, compute_stereo
    from depthweb.services.studio import decode_photo

    if args.calib is not None and (args.rectify or args.focal_px is not None):
        raise InputError("--calib already says how to treat the pair: drop --rectify and "
                         "--focal-px.")
    if args.calib is None and not args.rectify:
        if args.focal_px is None:
            raise InputError("Give --calib FILE, --focal-px with --baseline-m (a rectified "
                             "pair), or --rectify (rectify the pair from its features).")
        if args.baseline_m is None:
            raise InputError("--focal-px needs --baseline-m (the stereo baseline in metres).")
    settings = get_settings()
    calib = calibration(args.calib, args.focal_px, args.baseline_m, args.doffs,
                        rectify=args.rectify, use_focal=not args.no_focal)
    left, _ = decode_photo(args.left, settings)
    right, _ = decode_photo(args.right, settings)
    computed = compute_stereo(left, right, calib, settings)
    out = computed.result
    more = {"_disparity.npy": npy_bytes(out.disparity)}
    if computed.rectification is not None:
        _, png = cv2.imencode(".png", cv2.cvtColor(computed.pair_picture, cv2.COLOR_RGB2BGR))
        more["_rectified_pair.png"] = png.tobytes()
    stem = args.left.stem
    files = write_outputs(out.depth, args.out, stem,
                          extra={"input": [args.left.name, args.right.name],
                                 "rectification": computed.rectification},
                          more=more)
    r = out.depth
    print(f"{display_name(stem)}: {r.kind} {r.width}x{r.height}, valid "
          f"{r.valid_fraction:.1%} -> {display_name(str(files[0].with_suffix('')))}.*, "
          f"{display_name(stem)}_disparity.npy")
    for note in r.notes:
        print(f"note: {note}")
    return 0
