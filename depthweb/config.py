"""Settings, declared once: every field comes from an environment variable ``DEPTHWEB_<NAME>``.

- ``DEPTHWEB_DATA_DIR``: database, blob store, registered students, exports and runs. Default:
  ``/data/depthweb`` when ``/data`` exists and is writable (a Hugging Face Space's persistent
  storage, a Docker volume), else ``~/.local/share/depthweb``.
- ``DEPTHWEB_BLOB_URL`` (``<data_dir>/blobs``): where the blob store lives: a local or shared
  path, or an fsspec URL of object storage such as ``s3://bucket/prefix`` (needs ``s3fs``).
- ``DEPTHWEB_BLOB_STORAGE_OPTIONS`` (``{}``): JSON options for that URL's fsspec driver, e.g.
  ``{"endpoint_url": "http://10.0.0.5:9000"}``; keys may also come from the driver's own
  environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``).
- ``DEPTHWEB_MODEL_DIR`` (unset): air-gapped weights, one folder per model: ``<dir>/<name>/``.
- ``DEPTHWEB_DATABASE_URL`` (``sqlite:///<data_dir>/depthweb.sqlite``): SQLAlchemy URL;
  ``postgresql://...`` for crowds.
- ``DEPTHWEB_OUTPUT_DIR`` (``<tmp>/depthweb-outputs``): temporary web outputs.
- ``DEPTHWEB_OUTPUT_MAX_AGE_MIN`` (``30``): web outputs older than this are deleted.
- ``DEPTHWEB_DEVICE`` (``auto``): ``auto``, ``cpu``, ``cuda``, ``cuda:1`` or ``mps``.
- ``DEPTHWEB_ONNX_RUNTIME`` (``auto``): engine of the ONNX backends (Metric3D, UniDepth):
  ``onnxruntime``, ``torch`` (the graph converted with onnx2torch) or ``auto`` (ONNX Runtime on
  the CPU or with its CUDA provider, the torch conversion on other CUDA machines such as ZeroGPU).
- ``DEPTHWEB_MAX_PIXELS`` (``50000000``): larger images are refused (decompression bombs).
- ``DEPTHWEB_MAX_UPLOAD_MB`` (``50``): web upload size limit.
- ``DEPTHWEB_DEFAULT_FOV_DEG`` (``60``): horizontal FOV assumed when nothing better is known.
- ``DEPTHWEB_DEFAULT_MODEL`` (``depth-anything-v2-small``): model preselected in the app.
- ``DEPTHWEB_STEREO_MAX_COST`` (``1000000000``): a stereo request whose pixels x disparities
  (after rectification, where the pair is rectified first) exceed this is refused before
  matching (SGBM costs a few ns per pixel-disparity and holds the model queue). ``0``: no limit.
- ``DEPTHWEB_REVIEW`` (``auto``): Review tabs and login: ``on``, ``off`` or ``auto`` (on when
  users exist).
- ``DEPTHWEB_QUEUE_MAX_SIZE`` (``100``): at most this many requests wait in the app's queue;
  beyond it a request is answered at once with Gradio's "queue is full" (HTTP 503) instead of
  waiting without bound. ``0`` means no limit.
- ``DEPTHWEB_ADMINS`` (empty): comma-separated Hugging Face user names that get the admin role
  when they sign in with Hugging Face (Space mode); the first admins of a Space.
- ``DEPTHWEB_OAUTH_DEFAULT_ROLE`` (``viewer``): the role of every other Hugging Face account
  the first time it signs in (``viewer`` or ``reviewer``).
- ``DEPTHWEB_VIDEO_MAX_FRAMES`` (``240``): a video is refused when more frames than this would
  be processed (after ``stride`` and ``max_frames``); keeps one clip from holding the queue.
- ``DEPTHWEB_VIDEO_MAX_SIDE`` (``512``): frames are downscaled so their longer side is at most
  this many pixels before the model sees them (a smaller ``max_side`` may be asked for).
- ``DEPTHWEB_VIDEO_MAX_SOURCE_SIDE`` (``4096``): videos whose frames are larger are refused.
- ``DEPTHWEB_VIDEO_MAX_SECONDS`` (``120``): longer clips are refused before decoding.
- ``DEPTHWEB_VIDEO_GPU_S_PER_FRAME`` (``0.5``): on ZeroGPU each video call asks ``spaces.GPU``
  for ``20 + frames x this`` seconds.

Request-level protections (:mod:`depthweb.server`; README "Security"):

- ``DEPTHWEB_ALLOWED_ORIGINS`` (empty): other sites (``https://host[:port]``, comma-separated)
  whose pages may send state-changing requests and read responses with credentials; the app's
  own origin is always allowed.
- ``DEPTHWEB_TRUSTED_PROXIES`` (empty): addresses or networks (``10.0.0.0/8``) of reverse
  proxies whose ``X-Forwarded-For`` names the client; from anyone else it is ignored.
- ``DEPTHWEB_MAX_JSON_KB`` (``1024``): body limit of API requests (everything but uploads).
- ``DEPTHWEB_MAX_UPLOAD_FILES`` (``10``): an upload request may carry at most
  ``MAX_UPLOAD_MB * MAX_UPLOAD_FILES`` bytes (the limit is per request, not per file).
- ``DEPTHWEB_SESSION_IDLE_MIN`` (``120``) and ``DEPTHWEB_SESSION_MAX_HOURS`` (``24``): a login
  ends after this long unused, and this long after it began.
- ``DEPTHWEB_PREDICT_MAX_PIXELS`` (``25000000``): larger images are refused when a model request
  joins the queue.
- ``DEPTHWEB_QUEUE_PER_USER`` (``2``): model requests one user (or, logged out, one address)
  may have waiting in the queue; ``0`` means no limit.
- ``DEPTHWEB_DISK_BUDGET_MB`` (``2048``): web outputs plus Gradio's temp folder stay under this,
  oldest deleted first; ``DEPTHWEB_CLEANUP_INTERVAL_MIN`` (``5``): how often they are cleaned.
  Gradio's temp folder is ``GRADIO_TEMP_DIR`` or ``<tmp>/depthweb-gradio-<user>`` (the app's own).
- ``DEPTHWEB_KEEP_FREED_MEMORY`` (``true``): the server asks the C allocator (glibc) to keep
  freed memory for reuse: one heap for all threads, arrays up to 32 MB from the heap, no
  returning of freed memory to the system (:mod:`depthweb.server.memory`). A 7-megapixel
  label is 27 MB; on a VM where fresh pages are slow to map this saves 0.2-0.9 s per request.

``HF_HUB_OFFLINE=1`` is honoured: nothing is downloaded, only cached or local weights are used.
"""

from __future__ import annotations

import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

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
    blob_url: str | None = None
    blob_storage_options: dict[str, Any] = Field(default_factory=dict)
    model_dir: Path | None = None
    database_url: str | None = None
    output_dir: Path = Field(
        default_factory=lambda: Path(tempfile.gettempdir()) / "depthweb-outputs"
    )
    device: str = "auto"
    onnx_runtime: Literal["auto", "onnxruntime", "torch"] = "auto"
    max_pixels: int = 50_000_000
    max_upload_mb: int = 50
    output_max_age_min: float = 30.0
    default_fov_deg: float = 60.0
    default_model: str = "depth-anything-v2-small"
    stereo_max_cost: float = Field(default=1e9, ge=0)
    review: str = "auto"
    queue_max_size: int = Field(default=100, ge=0)
    allowed_origins: str = ""
    trusted_proxies: str = ""
    max_json_kb: int = Field(default=1024, ge=1)
    max_upload_files: int = Field(default=10, ge=1)
    session_idle_min: float = Field(default=120.0, gt=0)
    session_max_hours: float = Field(default=24.0, gt=0)
    predict_max_pixels: int = Field(default=25_000_000, ge=1)
    queue_per_user: int = Field(default=2, ge=0)
    disk_budget_mb: float = Field(default=2048.0, gt=0)
    cleanup_interval_min: float = Field(default=5.0, gt=0)
    admins: str = ""
    oauth_default_role: Literal["viewer", "reviewer"] = "viewer"
    video_max_frames: int = Field(default=240, ge=1)
    video_max_side: int = Field(default=512, ge=32)
    video_max_source_side: int = Field(default=4096, ge=32)
    video_max_seconds: float = Field(default=120.0, gt=0)
    video_gpu_s_per_frame: float = Field(default=0.5, gt=0)
    keep_freed_memory: bool = True

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
