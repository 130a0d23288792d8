"""Review-platform commands: ``db upgrade``, ``db gc``, ``db check``, ``users add``,
``users list``, ``users passwd``, ``users disable``, ``users enable``, ``import``,
``import-depth``, ``pseudo-label``, ``export``.

The database URL and the data directory (blob store) come from the settings
(``DEPTHWEB_DATABASE_URL``, ``DEPTHWEB_DATA_DIR``) for every command. Commands act as the local
operator (``SYSTEM``, admin rights). Problems are one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import sys
from collections.abc import Callable
from pathlib import Path

from depthweb.cli.engine import add_model_options, file_error
from depthweb.errors import DepthwebError, InputError

Command = Callable[[argparse.Namespace], int]


def _one_line_errors(fn: Command) -> Command:
    """Database and file-system failures become one-sentence :class:`DepthwebError`s."""

    @functools.wraps(fn)
    def wrapper(args: argparse.Namespace) -> int:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return fn(args)
        except SQLAlchemyError as exc:
            orig = getattr(exc, "orig", None) or exc
            first = str(orig).strip().splitlines()[0] if str(orig).strip() else ""
            raise DepthwebError(
                f"Database error ({type(orig).__name__}: {first[:200]}); check "
                "DEPTHWEB_DATABASE_URL and run `depthweb db upgrade`."
            ) from exc
        except OSError as exc:
            raise file_error(exc) from exc

    return wrapper


def register(sub: argparse._SubParsersAction) -> None:
    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    p = db_sub.add_parser("upgrade", help="create or migrate the database to the newest schema")
    p.set_defaults(func=cmd_db_upgrade)
    p = db_sub.add_parser("gc", help="delete blob files no database row points to")
    p.add_argument("--min-age-s", type=float, default=3600.0,
                   help="only files older than this (younger ones may await their row)")
    p.set_defaults(func=cmd_db_gc)
    p = db_sub.add_parser("check", help="verify every blob file against its sha256; tasks "
                          "with a missing or corrupt file are named (and set aside as broken)")
    p.add_argument("--no-mark", action="store_true",
                   help="only report; do not set the affected tasks aside as broken")
    p.set_defaults(func=cmd_db_check)
    p = db_sub.add_parser("previews", help="make the display-size review pictures of the tasks "
                          "still to review ahead of time (pseudo-label does it for the tasks it "
                          "creates; use after a Ray run or an import of depth)")
    p.add_argument("--dataset", default=None, help="only this dataset's tasks")
    p.set_defaults(func=cmd_db_previews)

    users = sub.add_parser("users", help="manage review accounts")
    users_sub = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    p = users_sub.add_parser("add", help="add a user (password prompted or from stdin)")
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=("admin", "reviewer", "viewer"))
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of stdin")
    p.set_defaults(func=cmd_users_add)
    p = users_sub.add_parser("list", help="list users and their roles")
    p.set_defaults(func=cmd_users_list)
    p = users_sub.add_parser("passwd", help="set a user's password (ends their logins)")
    p.add_argument("name")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of stdin")
    p.set_defaults(func=cmd_users_passwd)
    for action, text in (("disable", "disable a user (ends their logins)"),
                         ("enable", "enable a disabled user")):
        p = users_sub.add_parser(action, help=text)
        p.add_argument("name")
        p.set_defaults(func=cmd_users_active, active=action == "enable")

    p = sub.add_parser("import", help="import images (folders, zips, files) into a dataset")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument("--dataset", required=True, help="dataset name (created when missing)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("import-depth",
                       help="import ground-truth depth (.npy metres or 16-bit .png) for images")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                   help="depth files or folders; each file is named after its image")
    p.add_argument("--dataset", required=True, help="the dataset holding the images")
    p.add_argument("--png-scale", type=float, default=0.001,
                   help="metres per PNG unit (default 0.001: millimetres; KITTI: 0.00390625)")
    p.add_argument("--focal-px", type=float, help="focal length in pixels, when known")
    p.set_defaults(func=cmd_import_depth)

    p = sub.add_parser("pseudo-label", help="run a teacher model over a dataset (resumable)")
    p.add_argument("--dataset", required=True)
    add_model_options(p)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--uncertainty", default="flip",
                   help="flip (default), none or second-model:NAME")
    p.add_argument("--second-weights", help="weights of the second model")
    p.add_argument("--limit", type=int, help="label at most this many images in this run")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this process, pipelined (default); ray: a Ray cluster "
                        "(pip install 'depthweb[ray]')")
    p.add_argument("--address", help="with --engine ray: the cluster to join (e.g. auto, "
                   "ray://head:10001); default: start a local Ray for this run")
    p.add_argument("--workers", type=int, default=2,
                   help="with --engine ray: model actors (each loads the model once)")
    p.add_argument("--num-gpus-per-worker", type=float, default=0.0,
                   help="with --engine ray: GPUs per model actor (fractions share a GPU)")
    p.set_defaults(func=cmd_pseudo_label)

    p = sub.add_parser("export", help="write a training-set export of a dataset")
    p.add_argument("--dataset", required=True)
    p.add_argument("-o", "--out", type=Path, required=True, metavar="DIR")
    p.add_argument("--filter", default="best",
                   choices=("best", "approved", "corrected", "pseudo", "unreviewed"))
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty DIR")
    p.add_argument("--push-to-hub", metavar="REPO", help="also upload to this Hub dataset repo")
    p.set_defaults(func=cmd_export)


def _bar(desc: str):
    """A tqdm bar on an interactive stderr; its total is set by the first progress call."""
    from tqdm import tqdm

    return tqdm(total=None, desc=desc, unit="img", disable=not sys.stderr.isatty())


def _ticker(bar) -> Callable[[int, int, str], None]:
    def tick(done: int, total: int, _name: str) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return tick


def _context():
    from depthweb.services.review import ReviewContext

    return ReviewContext.from_settings()


@_one_line_errors
def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from depthweb.config import get_settings
    from depthweb.store import current_revision, make_engine, upgrade

    settings = get_settings()
    engine = make_engine(settings.resolved_database_url)
    try:
        upgrade(engine)
        rev = current_revision(engine)
        print(f"{engine.url.render_as_string(hide_password=True)}: schema at revision {rev}")
    finally:
        engine.dispose()
    return 0


@_one_line_errors
def cmd_db_gc(args: argparse.Namespace) -> int:
    with _context() as ctx, ctx.session(readonly=True) as s:
        removed = ctx.store.gc(s, min_age_s=args.min_age_s)
    print(f"removed {len(removed)} orphan blob file(s) from {ctx.store.url}")
    return 0


@_one_line_errors
def cmd_db_check(args: argparse.Namespace) -> int:
    """Exit status 0 when every blob is intact, 1 when a problem was found."""
    from depthweb.services.review.admin import check_store

    with _context() as ctx:
        report = check_store(ctx, mark_broken=not args.no_mark)
    for problem in report.problems:
        print(problem.sentence())
    marked = "" if args.no_mark or not report.broken_tasks else " (set aside as broken)"
    print(f"checked {report.n_checked} blob(s): {len(report.problems)} problem(s); "
          f"{len(report.broken_tasks)} task(s) affected{marked}")
    return 1 if report.problems else 0


@_one_line_errors
def cmd_db_previews(args: argparse.Namespace) -> int:
    from depthweb.services.review.admin import warm_previews

    with _context() as ctx:
        bar = _bar("previews")
        made, failed = warm_previews(ctx, args.dataset, _ticker(bar))
        bar.close()
    print(f"made the previews of {made} task(s); {failed} task(s) have a missing or corrupt "
          f"file (see `depthweb db check`)")
    return 1 if failed else 0


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise InputError("No password on stdin; pipe one line with the password.")
        return line.rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != first:
        raise InputError("The two passwords differ; nothing was saved.")
    return first


@_one_line_errors
def cmd_users_add(args: argparse.Namespace) -> int:
    from depthweb.store import SYSTEM, create_user

    password = _read_password(args.password_stdin)
    with _context() as ctx, ctx.session() as s:
        user = create_user(session=s, actor=SYSTEM, name=args.name, password=password,
                           role=args.role)
        print(f"user {user.name} ({user.role}) added")
    return 0


@_one_line_errors
def cmd_users_list(args: argparse.Namespace) -> int:
    from depthweb.store.auth import list_users

    with _context() as ctx, ctx.session(readonly=True) as s:
        for u in list_users(s):
            print(f"{u.name}\t{u.role}\t{'active' if u.active else 'disabled'}")
    return 0


@_one_line_errors
def cmd_users_passwd(args: argparse.Namespace) -> int:
    from depthweb.services.accounts import set_password
    from depthweb.store import SYSTEM

    password = _read_password(args.password_stdin)
    with _context() as ctx:
        set_password(ctx, args.name, password, acting=SYSTEM)
    print(f"password of {args.name} changed; their logins have ended")
    return 0


@_one_line_errors
def cmd_users_active(args: argparse.Namespace) -> int:
    from depthweb.services.accounts import set_active
    from depthweb.store import SYSTEM

    with _context() as ctx:
        set_active(ctx, args.name, args.active, acting=SYSTEM)
    print(f"user {args.name} {'enabled' if args.active else 'disabled; their logins have ended'}")
    return 0


@_one_line_errors
def cmd_import(args: argparse.Namespace) -> int:
    from depthweb.services.review import import_images
    from depthweb.store import SYSTEM

    with _context() as ctx, _bar(f"import {args.dataset}") as bar:
        report = import_images(ctx, args.paths, dataset=args.dataset, user=SYSTEM,
                               progress=_ticker(bar))
    _print_failures(report.failed)
    print(report.summary())
    return 1 if report.failed else 0


def _print_failures(failed: list[tuple[str, str]]) -> None:
    for name, reason in failed:
        print(f"error: {reason}" if name in reason else f"error: {name}: {reason}",
              file=sys.stderr)


@_one_line_errors
def cmd_import_depth(args: argparse.Namespace) -> int:
    from depthweb.services.review.groundtruth import import_ground_truth
    from depthweb.store import SYSTEM

    with _context() as ctx:
        report = import_ground_truth(ctx, args.paths, dataset=args.dataset, user=SYSTEM,
                                     png_scale=args.png_scale, focal_px=args.focal_px)
    _print_failures(report.failed)
    for name in report.kept:
        print(f"note: {name} was stored but its task was already reviewed, so it keeps its "
              "label.", file=sys.stderr)
    print(report.summary())
    return 1 if report.failed else 0


@_one_line_errors
def cmd_pseudo_label(args: argparse.Namespace) -> int:
    from depthweb.services.review import pseudo_label
    from depthweb.store import SYSTEM

    run, extra = pseudo_label, {}
    if args.engine == "ray":
        from depthweb.services.review.pseudolabel_ray import pseudo_label_ray

        run, extra = pseudo_label_ray, {"address": args.address, "workers": args.workers,
                                        "num_gpus_per_worker": args.num_gpus_per_worker}
    elif args.address or args.num_gpus_per_worker:
        raise InputError("--address and --num-gpus-per-worker need --engine ray.")
    with _context() as ctx, _bar(f"pseudo-label {args.model}") as bar:
        report = run(
            ctx, args.dataset, args.model, user=SYSTEM, weights=args.weights,
            batch_size=args.batch_size, device=args.device, uncertainty=args.uncertainty,
            second_weights=args.second_weights, limit=args.limit, progress=_ticker(bar),
            **extra,
        )
    _print_failures(report.failed)
    print(report.summary())
    return 1 if report.failed else 0


@_one_line_errors
def cmd_export(args: argparse.Namespace) -> int:
    from depthweb.services.review import export_dataset
    from depthweb.store import SYSTEM

    with _context() as ctx:
        report = export_dataset(
            ctx, args.dataset, args.out, user=SYSTEM, filter=args.filter,
            push_to_hub=args.push_to_hub, val_fraction=args.val_fraction,
            overwrite=args.overwrite,
        )
    print(report.summary())
    return 0
