"""The Studio app: Predict, Compare and Stereo tabs in one ``gr.Blocks``.

Every model call goes through one queue (``concurrency_id="gpu"``, one at a time); at most
``settings.queue_max_size`` requests wait (more are refused at once with Gradio's "queue is
full", so an overloaded app answers instead of letting clients wait without bound). Outputs are
written to per-request folders under ``settings.output_dir`` and deleted after
``settings.output_max_age_min``; Gradio's own copies of them are deleted on the same schedule
(``delete_cache``).
"""

from __future__ import annotations

import gradio as gr

from depthweb.config import Settings, get_settings
from depthweb.ui import compare_tab, predict_tab, stereo_tab, train_tab, video_tab
from depthweb.ui.auth import review_launch_kwargs
from depthweb.ui.common import CSS, Context, served_paths
from depthweb.ui.review_tab import add_review_tabs

HEADER = """# depthweb Studio
Depth from one photo (or a stereo pair): an interactive 3D view, true raw exports, the camera
intrinsics used, and measurements in metres where the depth is metric."""


def build_app(settings: Settings | None = None) -> gr.Blocks:
    """The Blocks app (not launched); ``settings`` default to the environment's."""
    settings = settings or get_settings()
    ctx = Context.create(settings)
    max_age = max(60, int(settings.output_max_age_min * 60))
    with gr.Blocks(title="depthweb Studio", analytics_enabled=False,
                   delete_cache=(max(60, max_age // 2), max_age)) as demo:
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
            review = add_review_tabs(settings)  # Review + Admin, when review is on
            if review is not None:
                train_tab.add_train_tab(review)  # admins only
    demo.queue(default_concurrency_limit=4, max_size=settings.queue_max_size or None)
    return demo


def launch_kwargs(settings: Settings | None = None) -> dict:
    """Keyword arguments for ``demo.launch()``: theme, CSS, upload limit, served paths."""
    settings = settings or get_settings()
    return {
        "theme": gr.themes.Soft(primary_hue="indigo", secondary_hue="purple"),
        "css": CSS,
        "max_file_size": f"{int(settings.max_upload_mb)}mb",
        **served_paths(settings),  # the output folder; data dir and database blocked
        "show_error": False,
        **review_launch_kwargs(settings),  # login (auth=) when the review feature is on
    }
