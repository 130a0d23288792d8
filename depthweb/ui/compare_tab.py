"""Compare tab: 2-4 models side by side, an agreement map and summary numbers.

Also registers the ``compare`` API endpoint.
"""

from __future__ import annotations

import math

import gradio as gr

from depthweb.services import compare
from depthweb.services.studio import json_safe
from depthweb.ui.common import GPU_QUEUE, Context, progress_callback, user_errors
from depthweb.ui.predict_tab import example_photos

SUMMARY_HEADERS = ["model", "kind", "scale", "shift", "AbsRel", "median rel.", "δ1", "forward ms"]


def _fmt(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}g}"


def summary_rows(summary: dict) -> list[list[str]]:
    """The summary dict as table rows (the reference first)."""
    rows = []
    for r in summary["models"]:
        if r.get("reference"):
            rows.append([r["model"], r["kind"], "reference", "", "", "", "",
                         _fmt(r["forward_ms"])])
        else:
            rows.append([r["model"], r["kind"], _fmt(r["scale"]), _fmt(r["shift"]),
                         _fmt(r["abs_rel"], 3), _fmt(r["median_rel"], 3), _fmt(r["delta1"], 3),
                         _fmt(r["forward_ms"])])
    return rows


def build(ctx: Context) -> None:
    """Lay out the tab and wire its events (inside a ``gr.Blocks`` context).

    With two or more models on this machine, two are preselected; with fewer, one line says
    what to do. A refused request (too few models, no photo) is answered in that line too,
    never with error panels.
    """
    available = ctx.available_names()
    initial = available[:2]
    gr.Markdown(compare.availability_line(available), elem_id="compare-availability",
                visible=len(available) < compare.MIN_MODELS)
    with gr.Row():
        with gr.Column(scale=2, min_width=300):
            photo = gr.Image(label="Photo", type="filepath", image_mode=None,
                             sources=["upload", "clipboard"], height=300,
                             elem_id="compare-photo")
            models = gr.Dropdown(ctx.dropdown_choices(), value=initial, multiselect=True,
                                 max_choices=compare.MAX_MODELS, label="Models (2 to 4)",
                                 elem_id="compare-models")
            reference = gr.Dropdown([(n, n) for n in initial], value=initial[0] if initial
                                    else None, label="Reference (others are aligned to it)")
            run = gr.Button("Compare", variant="primary", elem_id="compare-run")
            photos = example_photos()
            if photos:
                gr.Examples(photos, inputs=[photo], examples_per_page=4)
        with gr.Column(scale=3, min_width=400):
            gallery = gr.Gallery(label="Depth per model (near = bright)", columns=2,
                                 height="auto", format="png", object_fit="contain",
                                 elem_id="compare-gallery")
            agreement = gr.Image(label="Disagreement with the reference after alignment "
                                 "(dark = agree, red = 25 % or more)", format="png",
                                 interactive=False, elem_id="compare-agreement")
    table = gr.Dataframe(headers=SUMMARY_HEADERS, label="Summary (after scale-shift alignment "
                         "to the reference)", interactive=False, elem_id="compare-summary")
    notes = gr.Markdown(elem_id="compare-notes")
    downloads = gr.File(label="Downloads", file_count="multiple", interactive=False)

    def on_models(selected):
        selected = selected or []
        return gr.Dropdown(choices=[(n, n) for n in selected],
                           value=selected[0] if selected else None)

    models.change(on_models, [models], [reference], api_visibility="private")

    def on_compare(image, names, ref, progress=gr.Progress()):  # noqa: B008
        problem = compare.request_problem(image, names, available)
        if problem:  # one line where the results go, no error panels
            return gr.skip(), gr.skip(), gr.skip(), f"**{problem}**", gr.skip()
        with user_errors("compare the models"):
            out = compare.compare_models(image, names, ref, ctx.settings, ctx.new_request_dir(),
                                         predict_fn=ctx.predict_fn,
                                         progress=progress_callback(progress))
        captions = [f"{r.model} · {r.kind} · {_fmt(r.timings_ms.get('forward'))} ms"
                    for r in out.results]
        text = (f"Compared in **{out.summary['space']}** space against **{out.reference}**; "
                "each model is aligned by trimmed least squares in its own space first.")
        return (list(zip(out.previews, captions, strict=True)), out.agreement_rgb,
                summary_rows(out.summary), text, [str(f) for f in out.files])

    run.click(on_compare, [photo, models, reference],
              [gallery, agreement, table, notes, downloads], api_visibility="private",
              **GPU_QUEUE)
    build_api(ctx)


def build_api(ctx: Context) -> None:
    """``/compare``: (image file, models list, reference) ->
    (agreement .npy, agreement .png, summary dict, per-model depth .npy files)."""
    with gr.Column(visible=False):
        image_in = gr.File(label="image", type="filepath")
        models_in = gr.Dropdown([m.name for m in ctx.models], multiselect=True,
                             allow_custom_value=True, label="models")
        reference_in = gr.Textbox("", label="reference")
        agree_npy, agree_png = gr.File(label="agreement_npy"), gr.File(label="agreement_png")
        summary = gr.JSON(label="summary")
        depths = gr.File(label="depth_npys", file_count="multiple")
        trigger = gr.Button("compare")

    def api_compare(image, models, reference="", progress=gr.Progress()):  # noqa: B008
        """2-4 model names; reference empty = the first model."""
        with user_errors("compare the models"):
            out = compare.compare_models(image, models, reference or None, ctx.settings,
                                         ctx.new_request_dir(), predict_fn=ctx.predict_fn,
                                         progress=progress_callback(progress))
        by_name = {f.name: str(f) for f in out.files}
        npys = [str(f) for f in out.files if f.suffix == ".npy"
                and not f.name.endswith("_agreement.npy")]
        agree = [v for k, v in by_name.items() if k.endswith("_agreement.npy")]
        png = [v for k, v in by_name.items() if k.endswith("_agreement.png")]
        return agree[0], png[0], json_safe(out.summary), npys

    trigger.click(api_compare, [image_in, models_in, reference_in],
                  [agree_npy, agree_png, summary, depths], api_name="compare", **GPU_QUEUE)
