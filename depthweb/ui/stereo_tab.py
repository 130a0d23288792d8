"""Stereo tab: a pair + calibration (or rectification from features) -> disparity, depth, the
rectified pair with guide lines, 3D view, mono fill; the bundled ray-cast example.

Also registers the ``stereo`` API endpoint.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import gradio as gr

from depthweb.errors import InputError
from depthweb.services import stereo_service, visuals
from depthweb.services.studio import json_safe
from depthweb.ui.common import (
    GPU_QUEUE,
    NO_MODEL,
    Context,
    md_inline,
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


EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "assets" / "examples" / "stereo"
PAIR_MODES = [("already rectified (calib.txt, or focal + baseline)", "rectified"),
              ("not rectified: rectify from features", "features"),
              ("not rectified, focal unknown: fundamental matrix (disparity only)", "no-focal")]


def _num(x: float | None, fmt: str, unit: str) -> str:
    return "unknown" if x is None else f"{x:{fmt}} {unit}"


def info_text(info: dict) -> str:
    c = info["calibration"]
    rng = info.get("depth_range")
    unit = {"metric_depth": "m", "relative_depth": "(relative, one unknown scale)",
            "relative_disparity": "px of disparity"}.get(info.get("kind"), "")
    rng_text = "none" if rng is None else f"{rng['min']:.3f} to {rng['max']:.3f} {unit}"
    lines = [f"**Calibration** f {_num(c['focal_px'], '.3f', 'px')} · baseline "
             f"{_num(c['baseline_m'], '.6g', 'm')} · doffs {c['doffs_px']:.4g} px "
             f"({md_inline(c['source'])})",
             f"**Stereo {info.get('kind', 'depth')}** {rng_text}, valid "
             f"{100 * info['valid_fraction']:.1f} % (holes are NaN, never invented)",
             "**Timings** " + " · ".join(f"{k} {v:.0f} ms" for k, v in info["timings_ms"].items())]
    fill = info.get("mono_fill")
    if fill:
        lines.append(f"**Mono fill** {fill['model']} aligned in {fill['space']} space (scale "
                     f"{fill['scale']:.4g}, shift {fill['shift']:.4g}); AbsRel vs stereo "
                     f"{fill['abs_rel_vs_stereo']:.3f}; holes filled "
                     f"{100 * fill['holes_filled_fraction']:.1f} %")
    rect = info.get("rectification")
    if rect:
        lo, hi = rect["disparity_range_px"]
        lines.append(f"**Rectification** {rect['method']}: {rect['inliers']} inlier matches · "
                     f"median epipolar error {rect['epipolar_error_before_px']:.2f} px before, "
                     f"{rect['epipolar_error_after_px']:.2f} px after · inlier disparities "
                     f"{lo:.1f} to {hi:.1f} px")
    lines += [f"**Note** {md_inline(n)}" for n in info.get("notes", [])]
    return "  \n".join(lines)


def _examples() -> list[list[str]]:
    names = ("im0.png", "im1.png", "calib.txt")
    if all((EXAMPLE_DIR / n).is_file() for n in names):
        return [[str(EXAMPLE_DIR / n) for n in names] + ["rectified", NO_MODEL]]
    return []


def _inputs(ctx: Context) -> tuple:
    """The input widgets and the bundled example: (left, right, calib, mode, focal, baseline,
    doffs, mono, run button)."""
    mono_choices = [("none (stereo only)", NO_MODEL), *ctx.dropdown_choices()]
    default_mono = ctx.default_model() if ctx.available_names() else NO_MODEL
    with gr.Row():
        left = gr.Image(label="Left image", type="filepath", image_mode=None,
                        height=240, elem_id="stereo-left")
        right = gr.Image(label="Right image", type="filepath", image_mode=None,
                         height=240, elem_id="stereo-right")
    with gr.Row():
        with gr.Column():
            calib = gr.File(label="Calibration: Middlebury calib.txt (rectified pair), OpenCV "
                            "YAML K1 D1 K2 D2 R T or KITTI calib_cam_to_cam.txt (rectified "
                            "here)", file_types=[".txt", ".yaml", ".yml", ".xml"],
                            type="filepath", elem_id="stereo-calib")
            mode = gr.Radio(PAIR_MODES, value="rectified", label="Without a two-camera "
                            "calibration, the pair is", elem_id="stereo-mode")
        with gr.Column():
            with gr.Row():
                focal = gr.Number(None, label="focal length (px)", minimum=0)
                baseline = gr.Number(None, label="baseline (m)", minimum=0)
                doffs = gr.Number(0, label="doffs (px)")
            mono = gr.Dropdown(mono_choices, value=default_mono, label="Mono model to fill "
                               "stereo holes", elem_id="stereo-mono")
            run = gr.Button("Compute stereo depth", variant="primary", elem_id="stereo-run")
    examples = _examples()
    if examples:
        gr.Examples(examples, [left, right, calib, mode, mono], label="Example: a rectified pair "
                    "with its calib.txt", cache_examples=False, elem_id="stereo-examples",
                    example_labels=["Ray-cast room (exact disparity)"])
    return left, right, calib, mode, focal, baseline, doffs, mono, run


def build(ctx: Context) -> None:
    """Lay out the tab and wire its events (inside a ``gr.Blocks`` context)."""
    state = gr.State(None)
    left, right, calib, mode, focal, baseline, doffs, mono, run = _inputs(ctx)
    with gr.Row():
        disparity = gr.Image(label="Disparity", format="png", interactive=False,
                             elem_id="stereo-disparity")
        depth = gr.Image(label="Depth · click a pixel", format="png",
                         interactive=False, elem_id="stereo-depth")
    readout = gr.Markdown("Run the matcher, then click the depth picture.",
                          elem_id="stereo-probe")
    pair = gr.Image(label="The pair as matched (after rectification, if any), with guide "
                    "lines: rows must correspond", format="png", interactive=False,
                    elem_id="stereo-pair")
    info = gr.Markdown(elem_id="stereo-info")
    with gr.Row():  # not in tabs: a hidden gr.Model3D stays blank
        with gr.Column(scale=3, min_width=400):
            plot = gr.Plot(label="3D mesh (metres)", elem_id="stereo-plot")
        with gr.Column(scale=2, min_width=300):
            model3d = gr.Model3D(label="Full-resolution mesh (GLB)", height=420,
                                 elem_id="stereo-model3d")
    downloads = gr.File(label="Downloads", file_count="multiple", interactive=False)

    def on_run(lp, rp, cp, pair_mode, f, b, d, mono_name,
               progress=gr.Progress()):  # noqa: B008
        with user_errors("compute the stereo depth"):
            cal = stereo_service.calibration(cp, optional_number(f), optional_number(b), d,
                                             rectify=pair_mode in ("features", "no-focal"),
                                             use_focal=pair_mode != "no-focal")
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
                kept, out.pair_picture)

    run.click(on_run, [left, right, calib, mode, focal, baseline, doffs, mono],
              [disparity, depth, plot, model3d, downloads, info, readout, state, pair],
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
    mono_model, rectify) -> (depth .npy, disparity .npy, 16-bit .png, .json sidecar, .glb,
    fused .npy or None, info dict). ``rectify``: ``""`` (rectified pair, or rectified by a
    two-camera calibration file), ``"features"`` or ``"no-focal"`` (rectify from features)."""
    with gr.Column(visible=False):
        inputs = [gr.File(label="left", type="filepath"), gr.File(label="right", type="filepath"),
                  gr.File(None, label="calib", type="filepath"), gr.Number(0, label="focal_px"),
                  gr.Number(0, label="baseline_m"), gr.Number(0, label="doffs"),
                  gr.Textbox("", label="mono_model"), gr.Textbox("", label="rectify")]
        names = ("depth_npy", "disparity_npy", "depth_png16", "sidecar_json", "mesh_glb",
                 "fused_npy")
        outs = [gr.File(label=n) for n in names]
        info = gr.JSON(label="info")
        trigger = gr.Button("stereo")

    def api_stereo(left, right, calib=None, focal_px=0.0, baseline_m=0.0, doffs=0.0,
                   mono_model="", rectify="", progress=gr.Progress()):  # noqa: B008
        """Depth of the left image; calib file or focal/baseline/doffs or rectify from
        features; mono optional."""
        with user_errors("compute the stereo depth"):
            if rectify not in (None, "", "features", "no-focal"):
                raise InputError("rectify must be empty, 'features' or 'no-focal'.")
            cal = stereo_service.calibration(calib, optional_number(focal_px),
                                             optional_number(baseline_m), doffs,
                                             rectify=bool(rectify),
                                             use_focal=rectify != "no-focal")
            out = stereo_service.run_stereo(
                left, right, cal, ctx.settings, ctx.new_request_dir(),
                mono_model=None if mono_model in (None, "", NO_MODEL) else mono_model,
                predict_fn=ctx.predict_fn, progress=progress_callback(progress))
        stem = out.files[0].stem
        wanted = (".npy", "_disparity.npy", ".png", ".json", ".glb", "_fused.npy")
        by_name = {f.name: str(f) for f in out.files}
        return (*[by_name.get(stem + s) for s in wanted], json_safe(out.info))

    trigger.click(api_stereo, inputs, [*outs, info], api_name="stereo", **GPU_QUEUE)
