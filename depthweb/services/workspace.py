"""Per-request output folders for the web app, under ``settings.output_dir``, and the app's own
Gradio temp folder, both bounded by age and by a total disk budget.

Every request that writes files gets its own folder ``<output_dir>/req-<UTC time>-<random>/``;
creating one first deletes request folders older than ``settings.output_max_age_min`` and then,
oldest first, what is needed to keep the output folder plus Gradio's temp folder under
``settings.disk_budget_mb``. Only folders whose names this module creates (and Gradio's
content-hash folders) are ever deleted, so pointing ``DEPTHWEB_OUTPUT_DIR`` or
``GRADIO_TEMP_DIR`` at a folder that holds other things cannot lose them.

Gradio deletes only the temp files its own process made: files of an earlier run (a restart, a
kill -9) stayed downloadable for ever. :func:`use_own_gradio_temp` gives the app a temp folder
of its own (not the machine-wide ``<tmp>/gradio``), and :class:`Janitor` empties both folders at
start and sweeps them on a schedule.
"""

from __future__ import annotations

import getpass
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from depthweb.config import Settings
from depthweb.fsutil import pid_alive as _alive

log = logging.getLogger(__name__)

PREFIX = "req-"
_NAME = re.compile(r"^req-\d{8}T\d{6}Z-[0-9a-f]{12}$")
_GRADIO_NAME = re.compile(r"^[0-9a-f]{32,128}$")  # Gradio's content-hash folders
_GRADIO_SPOOL = re.compile(r"^tmp[A-Za-z0-9_]{6,12}$")  # its upload spool files (tempfile)
MiB = 1024 * 1024


def _own_temp_parent() -> Path:
    try:
        user = re.sub(r"[^A-Za-z0-9_.-]", "_", getpass.getuser())
    except (KeyError, OSError):
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"depthweb-gradio-{user}"


def gradio_temp_dir() -> Path:
    """Gradio's temp folder for this app: ``GRADIO_TEMP_DIR`` when set, else one per process,
    ``<tmp>/depthweb-gradio-<user>/<pid>`` (never the machine-wide ``<tmp>/gradio``, which
    other processes share)."""
    configured = os.environ.get("GRADIO_TEMP_DIR")
    if configured:
        return Path(configured).expanduser()
    return _own_temp_parent() / str(os.getpid())


def use_own_gradio_temp() -> Path:
    """Point Gradio at :func:`gradio_temp_dir` (sets ``GRADIO_TEMP_DIR``; call before building
    the Blocks: components read it when they are created) and create it (mode 0700)."""
    path = gradio_temp_dir()
    os.environ["GRADIO_TEMP_DIR"] = str(path)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def dead_process_temps() -> list[Path]:
    """Default temp folders (``<tmp>/depthweb-gradio-<user>/<pid>``) of processes that are
    gone: what a killed or stopped earlier run left behind."""
    parent = _own_temp_parent()
    if not parent.is_dir():
        return []
    return [p for p in parent.iterdir()
            if p.is_dir() and p.name.isdigit() and int(p.name) != os.getpid()
            and not _alive(int(p.name))]


def gradio_entries(root: Path) -> list[Path]:
    """Gradio's content-hash folders and upload spool files directly under ``root``."""
    if not root.is_dir():
        return []
    return [p for p in root.iterdir()
            if (p.is_dir() and _GRADIO_NAME.match(p.name))
            or (p.is_file() and _GRADIO_SPOOL.match(p.name))]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def tree_size(path: Path) -> int:
    """Bytes of the regular files under ``path`` (or of ``path`` itself; 0 when it vanished)."""
    if path.is_file():
        try:
            return path.stat().st_size
        except OSError:
            return 0
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return total


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


IN_USE_S = 5.0
"""The budget never deletes what changed in the last few seconds: an upload a request is about
to read, or results a client is about to download."""


def prune(entries: Iterable[Path], *, max_age_s: float | None = None,
          budget_bytes: float | None = None, now: float | None = None,
          keep: Path | None = None, in_use_s: float = IN_USE_S) -> int:
    """Delete ``entries`` older than ``max_age_s``, then the oldest until their total size is
    within ``budget_bytes`` (``keep`` and entries younger than ``in_use_s`` are spared);
    returns how many were deleted."""
    now = time.time() if now is None else now
    aged = sorted(((_mtime(p), p) for p in entries), key=lambda t: t[0])
    removed, kept = 0, []
    for mtime, path in aged:
        if max_age_s is not None and now - mtime > max_age_s and path != keep:
            _remove(path)
            removed += 1
        else:
            kept.append(path)
    if budget_bytes is not None:
        sizes = {p: tree_size(p) for p in kept}
        total = sum(sizes.values())
        for path in kept:  # oldest first
            if total <= budget_bytes:
                break
            if path == keep or now - _mtime(path) < in_use_s:
                continue
            _remove(path)
            total -= sizes[path]
            removed += 1
    return removed


@dataclass(frozen=True)
class Workspace:
    """Where request folders live (``root``), how long they are kept (``max_age_s``), and the
    disk budget (bytes) they share with Gradio's temp folder ``gradio_root``."""

    root: Path
    max_age_s: float
    budget_bytes: float | None = None
    gradio_root: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Workspace:
        return cls(Path(settings.output_dir).expanduser(), float(settings.output_max_age_min) * 60,
                   float(settings.disk_budget_mb) * MiB, gradio_temp_dir())

    def new_request_dir(self) -> Path:
        """Clean up old folders and keep the budget, then create and return a fresh, empty
        request folder."""
        self.cleanup()
        self.enforce_budget()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = self.root / f"{PREFIX}{stamp}-{uuid.uuid4().hex[:12]}"
        path.mkdir(parents=True, exist_ok=False)
        return path

    def entries(self) -> list[Path]:
        """Everything the budget covers: request folders and Gradio's hash folders."""
        gradio = gradio_entries(self.gradio_root) if self.gradio_root is not None else []
        return self.request_dirs() + gradio

    def enforce_budget(self, keep: Path | None = None) -> int:
        """Delete the oldest entries until the total is within ``budget_bytes``."""
        if self.budget_bytes is None:
            return 0
        removed = prune(self.entries(), budget_bytes=self.budget_bytes, keep=keep)
        if removed:
            log.info("disk budget: removed %d oldest folder(s)", removed)
        return removed

    def sweep(self, now: float | None = None) -> int:
        """The scheduled clean-up: both folders by age, then the budget, oldest first."""
        return prune(self.entries(), max_age_s=self.max_age_s, budget_bytes=self.budget_bytes,
                     now=now)

    def clear(self) -> int:
        """Delete every request folder and Gradio hash folder (at start: files of an earlier
        run must not stay downloadable)."""
        return prune(self.entries(), max_age_s=-1.0, in_use_s=0.0)

    def request_dirs(self) -> list[Path]:
        """Request folders currently on disk (only names this module creates)."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_dir() and _NAME.match(p.name))

    def cleanup(self, now: float | None = None) -> int:
        """Delete request folders last modified more than ``max_age_s`` ago; returns how many."""
        now = time.time() if now is None else now
        removed = 0
        for path in self.request_dirs():
            try:
                age = now - path.stat().st_mtime
            except FileNotFoundError:  # removed by a concurrent request
                continue
            if age > self.max_age_s:
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
        if removed:
            log.info("removed %d old output folder(s) from %s", removed, self.root)
        return removed


_CLEARED: set[tuple[Path, Path | None]] = set()
_CLEARED_LOCK = threading.Lock()


class Janitor:
    """Empties the workspace at :meth:`start`, then sweeps it every ``interval_s`` in a daemon
    thread until :meth:`stop`."""

    def __init__(self, workspace: Workspace, interval_s: float) -> None:
        self.workspace = workspace
        self.interval_s = max(1.0, float(interval_s))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Janitor:
        return cls(Workspace.from_settings(settings), float(settings.cleanup_interval_min) * 60)

    def start(self) -> Janitor:
        """Delete what earlier runs left (once per process and folder: a second server in
        the same process must not delete the first one's files), then sweep on a schedule."""
        removed = 0
        for old in dead_process_temps():
            shutil.rmtree(old, ignore_errors=True)
            removed += 1
        key = (self.workspace.root, self.workspace.gradio_root)
        with _CLEARED_LOCK:
            first = key not in _CLEARED
            _CLEARED.add(key)
        if first:
            removed += self.workspace.clear()
        log.info("cleared %d folder(s) left by an earlier run", removed)
        self._thread = threading.Thread(target=self._run, name="depthweb-janitor", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.workspace.sweep()
            except OSError as exc:  # keep sweeping later; a full disk must not kill the thread
                log.error("workspace sweep failed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
