"""Backends registered by name; heavy imports happen here lazily, weights load on first use."""

from __future__ import annotations

import difflib
import importlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from depthweb.config import Settings, get_settings
from depthweb.errors import UnknownModelError
from depthweb.models.base import DepthBackend
from depthweb.models.loading import resolve_weights
from depthweb.models.specs import SPECS, ModelSpec

log = logging.getLogger(__name__)

FAMILIES: dict[str, str] = {
    "depth_anything": "depthweb.models.depth_anything:DepthAnythingBackend",
    "depth_pro": "depthweb.models.depth_pro:DepthProBackend",
    "metric3d": "depthweb.models.metric3d:Metric3DBackend",
    "unidepth": "depthweb.models.unidepth:UniDepthBackend",
    "student": "depthweb.models.student:StudentBackend",
}

SpecProvider = Callable[[Settings], list[ModelSpec]]
BUILTIN_PROVIDERS: tuple[str, ...] = ("depthweb.training.registry:student_specs",)
"""Spec providers every process uses, imported on first use (never at import time): the
students registered under ``<data_dir>/students`` (:mod:`depthweb.training.registry`)."""
_providers: list[SpecProvider] = []
_cache: dict[tuple[str, str, str], DepthBackend] = {}
_lock = threading.Lock()


def add_spec_provider(provider: SpecProvider) -> None:
    """Register a source of extra specs (e.g. trained students in the data directory)."""
    if provider not in _providers:
        _providers.append(provider)


def list_specs(settings: Settings | None = None) -> list[ModelSpec]:
    settings = settings or get_settings()
    specs = list(SPECS)
    for provider in [*_builtin_providers(), *_providers]:
        specs.extend(provider(settings))
    return specs


def _builtin_providers() -> list[SpecProvider]:
    providers = []
    for ref in BUILTIN_PROVIDERS:
        module, _, attr = ref.partition(":")
        providers.append(getattr(importlib.import_module(module), attr))
    return providers


def get_spec(name: str, settings: Settings | None = None) -> ModelSpec:
    specs = {s.name: s for s in list_specs(settings)}
    if name in specs:
        return specs[name]
    close = difflib.get_close_matches(name, specs, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else " Run `depthweb models` to list them."
    raise UnknownModelError(f"Unknown model '{name}'.{hint}")


def backend_class(family: str) -> type[DepthBackend]:
    module, _, attr = FAMILIES[family].partition(":")
    return getattr(importlib.import_module(module), attr)


def load_backend(
    name: str,
    weights: str | Path | None = None,
    *,
    device: str | None = None,
    settings: Settings | None = None,
) -> DepthBackend:
    """The loaded backend for ``name`` (kept in an in-process cache)."""
    from depthweb.models.torch_utils import pick_device

    settings = settings or get_settings()
    spec = get_spec(name, settings)
    dev = pick_device(device or settings.device)
    key = (name, str(weights or ""), dev)
    with _lock:
        if key in _cache:
            return _cache[key]
        resolved = resolve_weights(spec, weights, settings=settings)
        t0 = time.perf_counter()
        backend = backend_class(spec.family).load(spec, resolved, dev)
        log.info("loaded %s from %s on %s in %.0f ms", name, resolved.label, dev,
                 (time.perf_counter() - t0) * 1000)
        _cache[key] = backend
        return backend


def clear_cache() -> None:
    with _lock:
        _cache.clear()
