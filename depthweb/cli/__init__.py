"""The ``depthweb`` command. Each sub-command lives in a small module and registers itself here."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from depthweb import __version__
from depthweb.errors import DepthwebError
from depthweb.logsafe import install_redaction, redact

log = logging.getLogger("depthweb")


def build_parser() -> argparse.ArgumentParser:
    from depthweb.cli import engine

    parser = argparse.ArgumentParser(
        prog="depthweb", description="Monocular depth: predict, review, train (see README)."
    )
    parser.add_argument("--version", action="version", version=f"depthweb {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    engine.register(sub)
    for name in ("review", "train", "video"):
        try:
            module = __import__(f"depthweb.cli.{name}", fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != f"depthweb.cli.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    install_redaction()  # tokens and database passwords never reach the terminal
    try:
        return int(args.func(args) or 0)
    except DepthwebError as exc:
        print(f"error: {redact(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def run() -> None:
    sys.exit(main())
