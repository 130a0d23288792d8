"""Pause points for fault tests, installed in a *child* process only (never in product code).

A child started with ``PYTHONPATH`` holding ``tests/faults/site`` (and the repository) and
``DEPTHWEB_FAULT_PAUSE`` set runs :func:`install` at start-up (``sitecustomize``). The variable
is a JSON list of pause specs::

    {"target": "depthweb.store.blobs:BlobStore.put_array", "when": "after", "nth": 3,
     "arg": 0, "arg_contains": "", "arg_has_file": "", "delete": ""}

The ``nth`` matching call (counting from 1) of ``target`` (``module:attribute.path``) pauses
``before`` or ``after`` the real call: one line ``PAUSED <target> <n>`` is appended to the file
``DEPTHWEB_FAULT_MARKER`` and the process sleeps for an hour, so the test can SIGKILL it at
exactly that point. A call matches when its argument number ``arg`` (default 0; 1 for
methods) as text contains ``arg_contains`` and, with ``arg_has_file``, names a folder holding
that file. ``delete`` (with ``before``): delete that file inside that folder first (a folder
deletion cut short).
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import time
from pathlib import Path
from typing import Any

PAUSE_ENV = "DEPTHWEB_FAULT_PAUSE"
MARKER_ENV = "DEPTHWEB_FAULT_MARKER"
SITE_DIR = Path(__file__).resolve().parent / "site"
PAUSE_S = 3600.0


def mark(line: str) -> None:
    """Append one line to the marker file (a single ``write``: lines never interleave)."""
    fd = os.open(os.environ[MARKER_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _resolve(target: str) -> tuple[Any, str]:
    module_name, _, path = target.partition(":")
    owner: Any = importlib.import_module(module_name)
    *parents, attr = path.split(".")
    for name in parents:
        owner = getattr(owner, name)
    return owner, attr


def _arg(spec: dict, args: tuple) -> str:
    i = int(spec.get("arg", 0))  # 1 for methods (0 is self)
    return str(args[i]) if len(args) > i else ""


def _matches(spec: dict, args: tuple) -> bool:
    text = _arg(spec, args)
    if spec.get("arg_contains") and spec["arg_contains"] not in text:
        return False
    return not spec.get("arg_has_file") or (Path(text) / spec["arg_has_file"]).is_file()


def _pause(spec: dict, n: int, args: tuple) -> None:
    if spec.get("delete") and _arg(spec, args):
        (Path(_arg(spec, args)) / spec["delete"]).unlink(missing_ok=True)
    mark(f"PAUSED {spec['target']} {n}")
    time.sleep(PAUSE_S)


def _wrap(func: Any, spec: dict) -> Any:
    seen = [0]
    nth, when = int(spec.get("nth", 1)), spec.get("when", "after")

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not _matches(spec, args):
            return func(*args, **kwargs)
        seen[0] += 1
        hit = seen[0] == nth
        if hit and when == "before":
            _pause(spec, seen[0], args)
        out = func(*args, **kwargs)
        if hit and when == "after":
            _pause(spec, seen[0], args)
        return out

    return wrapper


def install(specs: list[dict] | None = None) -> None:
    """Patch every target of ``specs`` (default: from ``DEPTHWEB_FAULT_PAUSE``)."""
    specs = specs if specs is not None else json.loads(os.environ[PAUSE_ENV])
    for spec in specs:
        owner, attr = _resolve(spec["target"])
        setattr(owner, attr, _wrap(getattr(owner, attr), spec))
    mark(f"INSTALLED {len(specs)}")


def pause_env(*specs: dict) -> dict[str, str]:
    """Environment for a child with these pause points (none: nothing is patched). The child
    also needs ``DEPTHWEB_FAULT_MARKER``."""
    if not specs:
        return {}
    path = os.pathsep.join([str(SITE_DIR), str(SITE_DIR.parents[2]),
                            os.environ.get("PYTHONPATH", "")])
    return {"PYTHONPATH": path, PAUSE_ENV: json.dumps(list(specs))}
