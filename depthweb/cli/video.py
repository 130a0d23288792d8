"""``depthweb video IN -m MODEL -o OUTDIR``: temporally stable depth of a clip."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from depthweb.cli.engine import add_model_options, file_errors


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("video", help="depth of a video clip: side-by-side video, .npz, .json")
    p.add_argument("video", type=Path, metavar="IN", help="MP4, MOV or WebM clip")
    add_model_options(p)
    p.add_argument("-o", "--out", type=Path, required=True, metavar="OUTDIR")
    p.add_argument("--max-frames", type=int, metavar="N", help="process at most N frames")
    p.add_argument("--stride", type=int, default=1, metavar="K",
                   help="keep every K-th frame (the frame rate is divided by K)")
    p.add_argument("--max-side", type=int, metavar="PX",
                   help="downscale frames to this longer side (at most the settings' cap)")
    p.add_argument("--cloud-frame", type=int, metavar="K",
                   help="also write frame K's point cloud (.ply)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_video)


@file_errors
def cmd_video(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from depthweb.services.video import process_video

    bar = tqdm(total=100, unit="%", disable=args.no_progress, file=sys.stderr,
               bar_format="{percentage:3.0f}%|{bar:20}| {desc}")

    def progress(fraction: float, desc: str) -> None:
        bar.n = round(100 * fraction)
        bar.set_description_str(desc, refresh=True)

    try:
        result = process_video(args.video, args.model, args.out, max_frames=args.max_frames,
                               stride=args.stride, max_side=args.max_side,
                               cloud_frame=args.cloud_frame, weights=args.weights,
                               device=args.device, progress=progress)
    finally:
        bar.close()
    resets = sum(f.reset for f in result.fits)
    print(f"{len(result.depth)} frames at {result.fps:.3g} fps, {result.kind} "
          f"({resets} segment{'s' if resets != 1 else ''})")
    for f in result.files:
        print(f)
    return 0
