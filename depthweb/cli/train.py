"""Training commands: ``train`` (export -> registered student) and ``eval`` (metrics on
NYU/KITTI-style folders).

::

    depthweb train --data EXPORT_DIR --config CONFIG -o RUN_DIR [--name NAME] [--resume]
    depthweb eval -m MODEL [--weights W] --data DIR [DIR ...] [--dataset nyu|kitti] [-o out.json]

Problems are one line on stderr and a non-zero exit (2).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from depthweb.cli.engine import add_model_options, file_errors


def register(sub: argparse._SubParsersAction) -> None:
    from depthweb.services.train import PRESETS

    p = sub.add_parser("train", help="train a student on a training-set export and register it")
    p.add_argument("--data", type=Path, required=True, metavar="EXPORT_DIR",
                   help="a folder written by `depthweb export`")
    p.add_argument("--config", default="small", metavar="CONFIG",
                   help=f"a .yaml/.json training config or a preset ({', '.join(PRESETS)}; "
                        "default small); the export replaces its export data sources")
    p.add_argument("-o", "--out", type=Path, required=True, metavar="RUN_DIR",
                   help="run folder: checkpoints, metrics.jsonl, student/")
    p.add_argument("--name", help="registry name of the student (default: from RUN_DIR)")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR")
    p.add_argument("--init-from", metavar="STUDENT",
                   help="fine-tune from a registered student (name) or a saved student folder "
                        "of the same architecture, e.g. the current teacher")
    p.add_argument("--steps", type=int, help="override the config's number of steps")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: the config's)")
    p.add_argument("--eval-data", type=Path, nargs="+", default=[], metavar="DIR",
                   help="evaluate the student and its teacher on these NYU/KITTI-style folders")
    p.add_argument("--dataset", choices=("nyu", "kitti"),
                   help="evaluation protocol (default: guessed per folder)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="AbsRel, RMSE, delta1..3 of a model on NYU/KITTI folders")
    add_model_options(p)
    p.add_argument("--data", type=Path, nargs="+", required=True, metavar="DIR",
                   help="folders laid out like ../shared/data/nyu (rgb/, depth/, "
                        "test_annotations.json)")
    p.add_argument("--dataset", choices=("nyu", "kitti"),
                   help="protocol: nyu (Eigen crop, 10 m) or kitti (LiDAR pixels, 80 m); "
                        "default: guessed from each folder")
    p.add_argument("--baselines", action="store_true",
                   help="also score a constant, a depth ramp and a disparity ramp")
    p.add_argument("-o", "--out", type=Path, metavar="JSON", help="write the results here")
    p.set_defaults(func=cmd_eval)


@file_errors
def cmd_train(args: argparse.Namespace) -> int:
    from depthweb.services.evaluation import eval_table
    from depthweb.services.train import train_student

    outcome = train_student(
        args.data, args.config, args.out, name=args.name, resume=args.resume, steps=args.steps,
        device=args.device, init_from=args.init_from, eval_dirs=args.eval_data,
        eval_dataset=args.dataset,
        progress=sys.stderr.isatty(),
    )
    res = outcome.result
    if res.student_dir is None:
        return 0  # a torchrun process other than rank 0: rank 0 reports and registers
    print(f"trained {res.steps} steps in {res.elapsed_s:.1f} s, final loss {res.last_loss:.4f}"
          f" -> {res.student_dir or res.run_dir}")
    if outcome.student is None:
        print(f"stopped early; continue with --resume -o {res.run_dir}", file=sys.stderr)
        return 1
    meta = outcome.student.meta
    print(f"registered student {outcome.student.name} (teacher {meta.get('parent_teacher')}, "
          f"data {str(meta.get('data_version'))[:16]}) in {outcome.student.path}")
    if outcome.comparison:
        for role in ("student", "teacher"):
            if outcome.comparison[role]:
                print(eval_table(outcome.comparison[role]))
        if outcome.comparison["teacher_error"]:
            print(f"teacher not evaluated: {outcome.comparison['teacher_error']}",
                  file=sys.stderr)
    return 0


@file_errors
def cmd_eval(args: argparse.Namespace) -> int:
    from depthweb.services.evaluation import eval_table, evaluate_model

    report = evaluate_model(args.model, args.data, weights=args.weights, dataset=args.dataset,
                            device=args.device, baselines=args.baselines)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    print(eval_table(report))
    if args.out is not None:
        print(f"results -> {args.out}")
    return 0
