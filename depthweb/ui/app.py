"""The two web apps, as ``gr.Blocks``: the public Studio and the review platform.

- :func:`build_studio`: Predict, Compare and Stereo (and any Studio tab added later), public,
  served at ``/`` with its ``gradio_client`` API (``/predict``, ``/compare``, ``/stereo``).
- :func:`build_review`: Review, Admin and Train, served at ``/review`` behind its own login
  (password login, or "Sign in with Hugging Face" on a Space); ``None`` when the review feature
  is off (:func:`depthweb.ui.auth.review_setup`).

:mod:`depthweb.server` mounts both on one FastAPI app with :func:`studio_mount_kwargs` and
:func:`review_mount_kwargs` (theme, CSS, upload limit, served paths, login).

Every model call takes its turn in the process-wide queue of
:mod:`depthweb.services.model_queue` (both apps), and in Gradio's per-Blocks queue
(``concurrency_id="gpu"``, one at a time); at most ``settings.queue_max_size`` requests wait
per app (more are refused at once with Gradio's "queue is full"). Outputs are written to
per-request folders under ``settings.output_dir`` and deleted after
``settings.output_max_age_min``; Gradio's own copies of them are deleted on the same schedule
(``delete_cache``).
"""

from __future__ import annotations

import gradio as gr

from depthweb.config import Settings, get_settings
from depthweb.ui import compare_tab, predict_tab, stereo_tab, train_tab, video_tab
from depthweb.ui.auth import review_launch_kwargs, review_setup
from depthweb.ui.common import CSS, Context, review_cache_dir, served_paths
from depthweb.ui.review_tab import add_review_tabs

HEADER = """# depthweb Studio
Depth from one photo (or a stereo pair): an interactive 3D view, true raw exports, the camera
intrinsics used, and measurements in metres where the depth is metric."""
REVIEW_HEADER = """# depthweb label review
Review, correct and approve pseudo-labels; admins manage datasets and users and train students.
The public [Studio](../) runs the models on your own photos."""
EPHEMERAL_NOTICE = ("**This Space has no persistent storage: every label, user and export is "
                    "lost when it restarts.** Enable persistent storage in the Space's settings "
                    "(it is mounted at `/data`, where depthweb then keeps its data).")


def _cache_schedule(settings: Settings) -> tuple[int, int]:
    max_age = max(60, int(settings.output_max_age_min * 60))
    return max(60, max_age // 2), max_age


def _queue(demo: gr.Blocks, settings: Settings) -> gr.Blocks:
    return demo.queue(default_concurrency_limit=4, max_size=settings.queue_max_size or None)


def build_studio(settings: Settings | None = None) -> gr.Blocks:
    """The public Studio Blocks (not launched); ``settings`` default to the environment's."""
    settings = settings or get_settings()
    ctx = Context.create(settings)
    with gr.Blocks(title="depthweb Studio", analytics_enabled=False,
                   delete_cache=_cache_schedule(settings)) as demo:
        gr.Markdown(HEADER, elem_id="dw-header")
        with gr.Tabs():
            with gr.Tab("Predict", id="predict"):
                predict_tab.build(ctx)
            with gr.Tab("Compare", id="compare"):
                compare_tab.build(ctx)
            with gr.Tab("Stereo", id="stereo"):
                stereo_tab.build(ctx)
            with gr.Tab("Video", id="video"):
                video_tab.build(ctx)
    return _queue(demo, settings)


def build_review(settings: Settings | None = None) -> gr.Blocks | None:
    """The review platform's Blocks (Review, Admin, Train), or ``None`` when the review
    feature is off. Raises :class:`~depthweb.errors.DepthwebError` when it is ``on`` and the
    database cannot be used."""
    settings = settings or get_settings()
    if review_setup(settings) is None:  # cached: add_review_tabs gets the same ReviewApp
        return None
    with gr.Blocks(title="depthweb review", analytics_enabled=False,
                   delete_cache=_cache_schedule(settings)) as demo:
        gr.Markdown(REVIEW_HEADER, elem_id="dw-header")
        if settings.data_lost_on_restart:
            gr.Markdown(EPHEMERAL_NOTICE, elem_id="review-ephemeral")
        with gr.Tabs():
            review = add_review_tabs(settings)  # Review + Admin
            train_tab.add_train_tab(review)  # admins only
    private = str(review_cache_dir())
    for block in demo.blocks.values():  # Gradio's copies of review outputs: own folder
        block.GRADIO_CACHE = private
    return _queue(demo, settings)


def _common_kwargs(settings: Settings) -> dict:
    return {
        "theme": gr.themes.Soft(primary_hue="indigo", secondary_hue="purple"),
        "css": CSS,
        "max_file_size": f"{int(settings.max_upload_mb)}mb",
        **served_paths(settings),  # the output folder; data dir and database blocked
        "show_error": False,
        "app_kwargs": {"docs_url": None, "redoc_url": None, "openapi_url": None},
    }


def studio_mount_kwargs(settings: Settings | None = None) -> dict:
    """Keyword arguments for mounting the Studio: theme, CSS, upload limit, served paths
    (the review platform's copies of its outputs blocked: the Studio has no login)."""
    kwargs = _common_kwargs(settings or get_settings())
    kwargs["blocked_paths"] = [*kwargs["blocked_paths"], str(review_cache_dir().resolve())]
    return kwargs


def review_mount_kwargs(settings: Settings | None = None) -> dict:
    """Keyword arguments for mounting the review platform: those of the Studio plus the
    password login (``auth=``; none with Hugging Face OAuth)."""
    settings = settings or get_settings()
    return {**_common_kwargs(settings), "run_history": False,  # nothing kept in browsers
            **review_launch_kwargs(settings)}
