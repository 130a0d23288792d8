"""Finding weights: ``--weights`` (a local path or hub id), the settings model directory, the hub.

Offline and not cached fails fast with one sentence naming the model and ``depthweb download``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from depthweb.config import Settings, get_settings
from depthweb.errors import ModelUnavailableError
from depthweb.models.specs import ModelSpec

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The checkout (or image) root that holds ``assets/``; bundled weights are found relative to it."""

_PATTERNS = {
    "depth_anything": ["*.json", "*.safetensors", "*.txt"],
    "depth_pro": ["*.json", "*.safetensors", "*.txt"],
    "student": ["*.json", "*.safetensors"],
}


@dataclass(frozen=True)
class ResolvedWeights:
    """Where weights are on disk and how to name them in outputs (``hub_id@revision`` or a path)."""

    path: Path
    label: str


def allow_patterns(spec: ModelSpec) -> list[str]:
    if "onnx_file" in spec.options:
        base = spec.options["onnx_file"]
        patterns = ["*.json", base, base + "_data"]
        return patterns if spec.hub_id else [*patterns, "*.onnx", "*.onnx_data"]
    return _PATTERNS.get(spec.family, ["*"])


def _split_ref(ref: str) -> tuple[str, str | None]:
    repo, _, rev = ref.partition("@")
    return repo, rev or None


def _hint(spec: ModelSpec) -> str:
    if spec.hub_id:
        return (f"run `depthweb download {spec.name}` on a connected machine "
                f"or pass --weights DIR")
    return "pass --weights with a local path or a hub id of an exported model"


def resolve_weights(
    spec: ModelSpec,
    weights: str | Path | None = None,
    *,
    settings: Settings | None = None,
    download: bool = True,
) -> ResolvedWeights:
    """Locate the weights of ``spec``; download them when allowed and online."""
    settings = settings or get_settings()
    if weights is not None:
        if str(weights).startswith("package:"):  # an installed package loads its own weights
            return ResolvedWeights(Path(str(weights)), str(weights))
        local = Path(weights).expanduser()
        if local.exists():
            return ResolvedWeights(local.resolve(), str(local.resolve()))
        if str(weights).startswith((".", "/", "~")) or "/" not in str(weights):
            raise ModelUnavailableError(f"Weights for model '{spec.name}' not found at {weights}.")
        repo, rev = _split_ref(str(weights))
        return _from_hub(spec, repo, rev or "main", settings, download)
    if spec.options.get("weights_dir"):  # a registered student: weights in its registry folder
        local = Path(spec.options["weights_dir"])
        if not local.is_dir():
            raise ModelUnavailableError(f"Weights for model '{spec.name}' are missing from "
                                        f"{local}; register the student again.")
        return ResolvedWeights(local.resolve(), str(local.resolve()))
    if settings.model_dir is not None:
        local = settings.model_dir / spec.name
        if local.exists():
            return ResolvedWeights(local.resolve(), str(local.resolve()))
    if spec.options.get("bundled"):  # shipped in the repository (assets/), works offline
        local = REPO_ROOT / spec.options["bundled"]
        if (local / "model.safetensors").is_file():
            return ResolvedWeights(local, f"bundled:{spec.options['bundled']}")
    if not spec.hub_id:
        raise ModelUnavailableError(
            f"Model '{spec.name}' has no public weights to download; {_hint(spec)}."
        )
    return _from_hub(spec, spec.hub_id, spec.revision, settings, download)


def _from_hub(
    spec: ModelSpec, repo: str, revision: str, settings: Settings, download: bool
) -> ResolvedWeights:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    offline = settings.hub_offline or not download
    label = f"{repo}@{revision}"
    try:
        path = snapshot_download(
            repo, revision=revision, allow_patterns=allow_patterns(spec),
            local_files_only=offline, etag_timeout=5,
        )
    except LocalEntryNotFoundError as exc:
        why = "is not cached and the hub is offline" if offline else "could not be downloaded"
        raise ModelUnavailableError(f"Model '{spec.name}' ({label}) {why}; {_hint(spec)}.") from exc
    except (HfHubHTTPError, OSError) as exc:
        raise ModelUnavailableError(
            f"Model '{spec.name}' ({label}) could not be downloaded ({type(exc).__name__}); "
            f"{_hint(spec)}."
        ) from exc
    return ResolvedWeights(Path(path), label)


def is_available(spec: ModelSpec, settings: Settings | None = None) -> bool:
    """Whether weights are on this machine (model dir or hub cache); never touches the network."""
    try:
        resolve_weights(spec, settings=settings, download=False)
    except ModelUnavailableError:
        return False
    return True


def download(spec: ModelSpec, settings: Settings | None = None) -> ResolvedWeights:
    """Fetch weights into the hub cache (``depthweb download``)."""
    settings = settings or get_settings()
    if settings.hub_offline:
        raise ModelUnavailableError(
            f"Cannot download model '{spec.name}' while HF_HUB_OFFLINE is set; unset it and retry."
        )
    return resolve_weights(spec, settings=settings, download=True)
