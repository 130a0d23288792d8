"""Settings, declared once: every field comes from an environment variable ``DEPTHWEB_<NAME>``.

- ``DEPTHWEB_DATA_DIR``: database, blob store, registered students, exports and runs. Default:
  ``/data/depthweb`` when ``/data`` exists and is writable (a Hugging Face Space's persistent
  storage, a Docker volume), else ``~/.local/share/depthweb``.
- ``DEPTHWEB_MODEL_DIR`` (unset): air-gapped weights, one folder per model: ``<dir>/<name>/``.
- ``DEPTHWEB_DATABASE_URL`` (``sqlite:///<data_dir>/depthweb.sqlite``): SQLAlchemy URL;
  ``postgresql://...`` for crowds.
- ``DEPTHWEB_OUTPUT_DIR`` (``<tmp>/depthweb-outputs``): temporary web outputs.
- ``DEPTHWEB_OUTPUT_MAX_AGE_MIN`` (``30``): web outputs older than this are deleted.
- ``DEPTHWEB_DEVICE`` (``auto``): ``auto``, ``cpu``, ``cuda``, ``cuda:1`` or ``mps``.
- ``DEPTHWEB_MAX_PIXELS`` (``50000000``): larger images are refused (decompression bombs).
- ``DEPTHWEB_MAX_UPLOAD_MB`` (``50``): web upload size limit.
- ``DEPTHWEB_DEFAULT_FOV_DEG`` (``60``): horizontal FOV assumed when nothing better is known.
- ``DEPTHWEB_DEFAULT_MODEL`` (``depth-anything-v2-small``): model preselected in the app.
- ``DEPTHWEB_REVIEW`` (``auto``): Review tabs and login: ``on``, ``off`` or ``auto`` (on when
  users exist).
- ``DEPTHWEB_QUEUE_MAX_SIZE`` (``100``): at most this many requests wait in the app's queue;
  beyond it a request is answered at once with Gradio's "queue is full" (HTTP 503) instead of
  waiting without bound. ``0`` means no limit.
- ``DEPTHWEB_ADMINS`` (empty): comma-separated Hugging Face user names that get the admin role
  when they sign in with Hugging Face (Space mode); the first admins of a Space.
- ``DEPTHWEB_OAUTH_DEFAULT_ROLE`` (``viewer``): the role of every other Hugging Face account
  the first time it signs in (``viewer`` or ``reviewer``).

``HF_HUB_OFFLINE=1`` is honoured: nothing is downloaded, only cached or local weights are used.
"""

from __future__ import annotations

import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PERSISTENT_ROOT = Path("/data")
"""Where Hugging Face Spaces mount persistent storage (and where the Docker image keeps its
volume)."""


def persistent_storage(root: Path | None = None) -> bool:
    """True when ``root`` (default :data:`PERSISTENT_ROOT`) is a directory this process may
    write to."""
    root = PERSISTENT_ROOT if root is None else root
    return root.is_dir() and os.access(root, os.W_OK | os.X_OK)


def on_space() -> bool:
    """True inside a Hugging Face Space (``SYSTEM=spaces``)."""
    return os.environ.get("SYSTEM") == "spaces"


def _default_data_dir() -> Path:
    if persistent_storage():
        return PERSISTENT_ROOT / "depthweb"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "depthweb"


class Settings(BaseSettings):
    """Typed settings; see the module docstring for the environment variables."""

    model_config = SettingsConfigDict(
        env_prefix="DEPTHWEB_", extra="ignore", protected_namespaces=()
    )

    data_dir: Path = Field(default_factory=_default_data_dir)
    model_dir: Path | None = None
    database_url: str | None = None
    output_dir: Path = Field(
        default_factory=lambda: Path(tempfile.gettempdir()) / "depthweb-outputs"
    )
    device: str = "auto"
    max_pixels: int = 50_000_000
    max_upload_mb: int = 50
    output_max_age_min: float = 30.0
    default_fov_deg: float = 60.0
    default_model: str = "depth-anything-v2-small"
    review: str = "auto"
    queue_max_size: int = Field(default=100, ge=0)
    admins: str = ""
    oauth_default_role: Literal["viewer", "reviewer"] = "viewer"

    @property
    def admin_names(self) -> frozenset[str]:
        """``DEPTHWEB_ADMINS`` as a set of Hugging Face user names (case kept)."""
        return frozenset(n.strip() for n in self.admins.split(",") if n.strip())

    @property
    def data_lost_on_restart(self) -> bool:
        """True on a Space whose data dir is not on persistent storage (``/data``)."""
        data = Path(self.data_dir).expanduser().resolve()
        return on_space() and not (persistent_storage()
                                   and data.is_relative_to(PERSISTENT_ROOT.resolve()))

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'depthweb.sqlite'}"

    @property
    def hub_offline(self) -> bool:
        return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
