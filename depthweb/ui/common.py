"""Shared wiring for the Studio tabs: the GPU queue, error sentences, progress, model lists."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from depthweb.config import Settings
from depthweb.errors import DepthwebError
from depthweb.services.studio import ModelChoice, model_choices
from depthweb.services.workspace import Workspace

log = logging.getLogger(__name__)

GPU_QUEUE = {"concurrency_id": "gpu", "concurrency_limit": 1}
"""Event options for every handler that runs a model: one shared queue, one at a time."""

NO_MODEL = "none"


def on_gpu(fn: Callable) -> Callable:
    """``spaces.GPU(fn)`` when the ``spaces`` package is importable (Hugging Face ZeroGPU),
    else ``fn`` unchanged. Call it while building the app, never at import time."""
    try:
        import spaces
    except ImportError:
        return fn
    return spaces.GPU(fn)


@dataclass
class Context:
    """What every tab needs: settings, the output workspace, the models and the GPU runner."""

    settings: Settings
    workspace: Workspace
    models: list[ModelChoice]
    predict_fn: Callable

    @classmethod
    def create(cls, settings: Settings) -> Context:
        from depthweb.services.predict import predict_images

        return cls(settings, Workspace.from_settings(settings), model_choices(settings),
                   on_gpu(predict_images))

    def dropdown_choices(self) -> list[tuple[str, str]]:
        """(label, name) pairs: kind and local availability in the label."""
        return [(m.label, m.name) for m in self.models]

    def default_model(self) -> str | None:
        names = [m.name for m in self.models]
        preferred = self.settings.default_model
        if preferred in names and next(m for m in self.models if m.name == preferred).available:
            return preferred
        available = [m.name for m in self.models if m.available]
        return available[0] if available else (preferred if preferred in names else None)

    def available_names(self) -> list[str]:
        return [m.name for m in self.models if m.available]

    def new_request_dir(self) -> Path:
        try:
            return self.workspace.new_request_dir()
        except OSError as exc:
            log.error("cannot create an output folder in %s: %s", self.workspace.root, exc)
            raise gr.Error("The server cannot write its output files right now; "
                           "please try again later.", print_exception=False) from exc


@contextmanager
def user_errors(action: str) -> Iterator[None]:
    """Turn library errors into one-sentence ``gr.Error`` popups; the app keeps serving.

    :class:`DepthwebError` messages are already user sentences. Anything unexpected is logged
    with its traceback and reported as a generic sentence naming ``action``.
    """
    try:
        yield
    except gr.Error:
        raise
    except DepthwebError as exc:
        log.info("%s: %s", action, exc)
        raise gr.Error(str(exc), print_exception=False) from exc
    except Exception as exc:
        log.exception("unexpected error while trying to %s", action)
        raise gr.Error(f"Could not {action} because of an internal error "
                       f"({type(exc).__name__}); the details are in the server log.",
                       print_exception=False) from exc


def progress_callback(progress: gr.Progress) -> Callable[[float, str], None]:
    """Adapt a ``gr.Progress`` to the services' ``progress(fraction, description)``."""

    def report(fraction: float, desc: str) -> None:
        progress(min(max(fraction, 0.0), 1.0), desc=desc)

    return report


def file_by_suffix(files: list[Path], suffix: str) -> str | None:
    """The first path whose name ends with ``suffix`` (as a string), or ``None``."""
    for f in files:
        if f.name.endswith(suffix):
            return str(f)
    return None


def optional_number(value: float | None) -> float | None:
    """Gradio numbers: ``None`` or 0 mean "not given"."""
    return None if value in (None, "") or value == 0 else float(value)


CSS = """
#dw-header h1 { margin-bottom: 0.1em; }
#dw-header p { margin-top: 0; opacity: 0.8; }
.dw-info table { font-size: 0.9em; }
.dw-info td:first-child { white-space: nowrap; font-weight: 600; }
"""
