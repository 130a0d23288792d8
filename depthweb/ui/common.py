"""Shared wiring for the Studio tabs: the model queue, error sentences, progress, model lists.

Model calls are queued twice: per Blocks by Gradio (``GPU_QUEUE``: one event at a time, at
most ``queue_max_size`` waiting) and process-wide by :mod:`depthweb.services.model_queue`
(``Context.predict_fn`` takes its turn there, so the Studio and the review platform never run
two models at once; on ZeroGPU it also runs under ``spaces.GPU``)."""

from __future__ import annotations

import html
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from depthweb.config import Settings
from depthweb.errors import DepthwebError
from depthweb.logsafe import install_redaction, redact
from depthweb.services import model_queue
from depthweb.services.review.access import sqlite_file
from depthweb.services.studio import ModelChoice, model_choices
from depthweb.services.workspace import Workspace

log = logging.getLogger(__name__)

GPU_QUEUE = {"concurrency_id": "gpu", "concurrency_limit": 1}
"""Event options for every handler that runs a model: one Gradio queue per Blocks, one at a
time (the process-wide turn is taken in :mod:`depthweb.services.model_queue`)."""

NO_MODEL = "none"
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")
_MD_INLINE = re.compile(r"([\\`*_\[\]|~!])")
_MD_LINE_START = re.compile(r"^(\s*)([#+=-]|\d+(?=[.)]))")


def html_text(text: object) -> str:
    """User text made literal in HTML (Gradio renders toast messages as sanitised HTML)."""
    return html.escape(str(text), quote=False)


def md_escape(text: object) -> str:
    """User text made inert for gr.Markdown: HTML escaped, every Markdown character
    backslashed (safe anywhere, also at the start of a line or in a table cell)."""
    return _MD_SPECIAL.sub(r"\\\1", html_text(text))


def md_inline(text: object) -> str:
    """User text made inert inside one line of gr.Markdown: HTML escaped, line breaks
    flattened, and the characters that open inline Markdown (emphasis, code, links, images,
    tables) backslashed, as is a leading heading / list marker (the text may start a list
    item); paths and sentences keep their ``/ - . ( )`` unchanged."""
    flat = _MD_INLINE.sub(r"\\\1", " ".join(html_text(text).splitlines()))
    return _MD_LINE_START.sub(lambda m: f"{m[1]}{m[2]}\\" if m[2].isdigit()
                              else f"{m[1]}\\{m[2]}", flat)


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

        install_redaction()  # the app is built after its logging is configured
        return cls(settings, Workspace.from_settings(settings), model_choices(settings),
                   model_queue.model_call(predict_images, "studio prediction"))

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

    :class:`DepthwebError` messages are already user sentences (secrets masked and HTML escaped
    here: they may quote what the user typed, and Gradio shows them as HTML). Anything
    unexpected is logged with its traceback and reported as a generic sentence naming
    ``action``.
    """
    try:
        yield
    except gr.Error:
        raise
    except DepthwebError as exc:
        log.info("%s: %s", action, exc)
        raise gr.Error(html_text(redact(exc)), print_exception=False) from exc
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


def gradio_temp_dir() -> Path:
    """Gradio's temp dir (``GRADIO_TEMP_DIR``, else ``<tmp>/gradio``): uploads and copies of
    outputs of both apps."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or str(Path(tempfile.gettempdir()) / "gradio"))


def review_cache_dir() -> Path:
    """Where the review platform's components keep Gradio's copies of their outputs (photos,
    labels): a folder of its own inside the temp dir, so the public Studio mount can block it
    while the review mount serves it to logged-in users."""
    return gradio_temp_dir() / "review-private"


def served_folders(settings: Settings) -> dict[str, Path]:
    """Every folder Gradio serves files from with these settings: the output folder
    (``allowed_paths``), Gradio's temp dir (uploads and copies of outputs) and its cached
    examples (relative to the working directory)."""
    temp = gradio_temp_dir()
    examples = os.environ.get("GRADIO_EXAMPLES_CACHE") or ".gradio/cached_examples"
    return {"DEPTHWEB_OUTPUT_DIR": Path(settings.output_dir), "GRADIO_TEMP_DIR": temp,
            "GRADIO_EXAMPLES_CACHE": Path(examples)}


def private_paths(settings: Settings) -> dict[str, Path]:
    """What must never be served: the data dir (blob store, students, exports, runs), the
    SQLite database file (when it lives elsewhere) and the code."""
    private = {"the data dir (DEPTHWEB_DATA_DIR)": Path(settings.data_dir),
               "the code": Path(__file__).resolve().parents[1]}
    db_file = sqlite_file(settings.resolved_database_url)  # a bad URL is reported where opened
    if db_file is not None:
        private["the database file"] = db_file
    return private


def _inside(path: Path, folder: Path) -> bool:
    return path.expanduser().resolve().is_relative_to(folder.expanduser().resolve())


def served_paths(settings: Settings) -> dict:
    """``allowed_paths`` and ``blocked_paths`` for ``launch()``: only the output folder is
    added to what Gradio serves; the data dir and the SQLite file with its ``-wal``, ``-shm``
    and ``-journal`` siblings are blocked (so no handler output from there is ever copied
    out). Raises :class:`DepthwebError` when a private path lies inside a served folder or
    the data dir and a served folder overlap."""
    served, private = served_folders(settings), private_paths(settings)
    data_dir = Path(settings.data_dir)
    for what, path in private.items():
        for var, folder in served.items():
            if _inside(path, folder) or (path == data_dir and _inside(folder, path)):
                raise DepthwebError(
                    f"{what} ({path}) and the served folder {var} ({folder}) overlap, so the "
                    "web app could serve private files; move one of them (the defaults keep "
                    "them apart).")
    blocked = [str(data_dir.expanduser().resolve())]
    db = private.get("the database file")
    if db is not None:
        db = db.expanduser().resolve()
        blocked += [str(db)] + [f"{db}{suffix}" for suffix in ("-wal", "-shm", "-journal")]
    return {"allowed_paths": [str(Path(settings.output_dir).expanduser())],
            "blocked_paths": blocked}


CSS = """
#dw-header h1 { margin-bottom: 0.1em; }
#dw-header p { margin-top: 0; opacity: 0.8; }
.dw-info table { font-size: 0.9em; }
.dw-info td:first-child { white-space: nowrap; font-weight: 600; }
"""
