"""Stereo tab: rectified pair + calibration -> disparity, metric depth, 3D view, mono fill.

Also registers the ``stereo`` API endpoint.
"""

from __future__ import annotations

import dataclasses

import gradio as gr

from depthweb.services import stereo_service, visuals
from depthweb.services.studio import json_safe
from depthweb.ui.common import (
    GPU_QUEUE,
    NO_MODEL,
    Context,
    optional_number,
    progress_callback,
    user_errors,
)


def probe_text(values: dict) -> str:
    """Markdown of :func:`stereo_service.probe` values."""
    u, v = values["pixel"]

    def fmt(x: float | None, unit: str) -> str:
        return "invalid" if x is None else f"{x:.4f} {unit}"

    parts = [f"**Pixel ({u}, {v})**", f"stereo depth **{fmt(values['stereo_depth_m'], 'm')}**",
             f"disparity {fmt(values['disparity_px'], 'px')}"]
    if values.get("fused_depth_m") is not None or values.get("mono_depth_m") is not None:
        parts += [f"mono (aligned) {fmt(values['mono_depth_m'], 'm')}",
                  f"fused {fmt(values['fused_depth_m'], 'm')}"]
    return " · ".join(parts)


def info_text(info: dict) -> str:
    c = info["calibration"]
    rng = info.get("depth_range")
    rng_text = "none" if rng is None else f"{rng['min']:.3f} to {rng['max']:.3f} m"
    lines = [f"**Calibration** f {c['focal_px']:.3f} px · baseline {c['baseline_m']:.6g} m · "
             f"doffs {c['doffs_px']:.4g} px ({c['source']})",
             f"**Stereo depth** {rng_text}, valid {100 * info['valid_fraction']:.1f} % "
             "(holes are NaN, never invented)",
             "**Timings** " + " · ".join(f"{k} {v:.0f} ms" for k, v in info["timings_ms"].items())]
    fill = info.get("mono_fill")
    if fill:
        lines.append(f"**Mono fill** {fill['model']} aligned in {fill['space']} space (scale "
                     f"{fill['scale']:.4g}, shift {fill['shift']:.4g}); AbsRel vs stereo "
                     f"{fill['abs_rel_vs_stereo']:.3f}; holes filled "
                     f"{100 * fill['holes_filled_fraction']:.1f} %")
    return "  \n".join(lines)


def build(ctx: Context) -> None:
    """Lay out the tab and wire its events (inside a ``gr.Blocks`` context)."""
    state = gr.State(None)
    mono_choices = [("none (stereo only)", NO_MODEL), *ctx.dropdown_choices()]
    default_mono = ctx.default_model() if ctx.available_names() else NO_MODEL
    with gr.Row():
        left = gr.Image(label="Left image (rectified)", type="filepath", image_mode=None,
                        height=240, elem_id="stereo-left")
        right = gr.Image(label="Right image (rectified)", type="filepath", image_mode=None,
                         height=240, elem_id="stereo-right")
    with gr.Row():
        calib = gr.File(label="Middlebury calib.txt", file_types=[".txt"], type="filepath",
                        elem_id="stereo-calib")
        with gr.Column():
            with gr.Row():
                focal = gr.Number(None, label="or focal length (px)", minimum=0)
                baseline = gr.Number(None, label="baseline (m)", minimum=0)
                doffs = gr.Number(0, label="doffs (px)")
            mono = gr.Dropdown(mono_choices, value=default_mono, label="Mono model to fill "
                               "stereo holes", elem_id="stereo-mono")
            run = gr.Button("Compute stereo depth", variant="primary", elem_id="stereo-run")
    with gr.Row():
        disparity = gr.Image(label="Disparity", format="png", interactive=False,
                             elem_id="stereo-disparity")
        depth = gr.Image(label="Depth · click a pixel", format="png",
                         interactive=False, elem_id="stereo-depth")
    readout = gr.Markdown("Run the matcher, then click the depth picture.",
                          elem_id="stereo-probe")
    info = gr.Markdown(elem_id="stereo-info")
    with gr.Row():  # not in tabs: a hidden gr.Model3D stays blank
        with gr.Column(scale=3, min_width=400):
            plot = gr.Plot(label="3D mesh (metres)", elem_id="stereo-plot")
        with gr.Column(scale=2, min_width=300):
            model3d = gr.Model3D(label="Full-resolution mesh (GLB)", height=420,
                                 elem_id="stereo-model3d")
    downloads = gr.File(label="Downloads", file_count="multiple", interactive=False)

    def on_run(lp, rp, cp, f, b, d, mono_name, progress=gr.Progress()):  # noqa: B008
        with user_errors("compute the stereo depth"):
            cal = stereo_service.calibration(cp, optional_number(f), optional_number(b), d)
            out = stereo_service.run_stereo(
                lp, rp, cal, ctx.settings, ctx.new_request_dir(),
                mono_model=None if mono_name in (None, "", NO_MODEL) else mono_name,
                predict_fn=ctx.predict_fn, progress=progress_callback(progress))
            disp = visuals.disparity_picture(out.disparity)
            shown = visuals.depth_preview(out.shown, "turbo", inverse=False)
        glb = next((str(f) for f in out.files if f.suffix == ".glb"), None)
        kept = dataclasses.replace(out, figure=None)
        label = (f"Depth, holes filled by {out.mono.model}" if out.mono is not None
                 else "Depth (holes in black)") + " · click a pixel"
        return (disp, gr.Image(shown, label=label), out.figure, glb, [str(f) for f in out.files],
                info_text(out.info), "Click the depth picture to read its values at a pixel.",
                kept)

    run.click(on_run, [left, right, calib, focal, baseline, doffs, mono],
              [disparity, depth, plot, model3d, downloads, info, readout, state],
              api_visibility="private", **GPU_QUEUE)

    def on_probe(out, evt: gr.SelectData):
        if out is None:
            raise gr.Error("Compute the stereo depth first.", print_exception=False)
        with user_errors("read the pixel"):
            return probe_text(stereo_service.probe(out, *evt.index[:2]))

    depth.select(on_probe, [state], [readout], api_visibility="private")
    build_api(ctx)


def build_api(ctx: Context) -> None:
    """``/stereo``: (left file, right file, calib file or None, focal_px, baseline_m, doffs,
    mono_model) -> (depth .npy, disparity .npy, 16-bit .png, .json sidecar, .glb,
    fused .npy or None, info dict)."""
    with gr.Column(visible=False):
        inputs = [gr.File(label="left", type="filepath"), gr.File(label="right", type="filepath"),
                  gr.File(None, label="calib", type="filepath"), gr.Number(0, label="focal_px"),
                  gr.Number(0, label="baseline_m"), gr.Number(0, label="doffs"),
                  gr.Textbox("", label="mono_model")]
        names = ("depth_npy", "disparity_npy", "depth_png16", "sidecar_json", "mesh_glb",
                 "fused_npy")
        outs = [gr.File(label=n) for n in names]
        info = gr.JSON(label="info")
        trigger = gr.Button("stereo")

    def api_stereo(left, right, calib=None, focal_px=0.0, baseline_m=0.0, doffs=0.0,
                   mono_model="", progress=gr.Progress()):  # noqa: B008
        """Metric depth of the left image; calib.txt or focal/baseline/doffs; mono optional."""
        with user_errors("compute the stereo depth"):
            cal = stereo_service.calibration(calib, optional_number(focal_px),
                                             optional_number(baseline_m), doffs)
            out = stereo_service.run_stereo(
                left, right, cal, ctx.settings, ctx.new_request_dir(),
                mono_model=None if mono_model in (None, "", NO_MODEL) else mono_model,
                predict_fn=ctx.predict_fn, progress=progress_callback(progress))
        stem = out.files[0].stem
        wanted = (".npy", "_disparity.npy", ".png", ".json", ".glb", "_fused.npy")
        by_name = {f.name: str(f) for f in out.files}
        return (*[by_name.get(stem + s) for s in wanted], json_safe(out.info))

    trigger.click(api_stereo, inputs, [*outs, info], api_name="stereo", **GPU_QUEUE)
