"""Per-request output folders for the web app, under ``settings.output_dir``, cleaned up by age.

Every request that writes files gets its own folder ``<output_dir>/req-<UTC time>-<random>/``;
creating one first deletes request folders older than ``settings.output_max_age_min``. Only
folders whose names this module creates are ever deleted, so pointing ``DEPTHWEB_OUTPUT_DIR`` at
a folder that holds other things cannot lose them.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from depthweb.config import Settings

log = logging.getLogger(__name__)

PREFIX = "req-"
_NAME = re.compile(r"^req-\d{8}T\d{6}Z-[0-9a-f]{12}$")


@dataclass(frozen=True)
class Workspace:
    """Where request folders live (``root``) and how long they are kept (``max_age_s``)."""

    root: Path
    max_age_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Workspace:
        return cls(Path(settings.output_dir).expanduser(), float(settings.output_max_age_min) * 60)

    def new_request_dir(self) -> Path:
        """Clean up old folders, then create and return a fresh, empty request folder."""
        self.cleanup()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = self.root / f"{PREFIX}{stamp}-{uuid.uuid4().hex[:12]}"
        path.mkdir(parents=True, exist_ok=False)
        return path

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
