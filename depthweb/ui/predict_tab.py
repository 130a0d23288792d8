"""Predict tab: photo -> depth slider, 3D view, downloads, info, measure and scale anchors.

Also registers the ``predict`` API endpoint (file in, files + JSON out).
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from depthweb.services import studio, visuals
from depthweb.ui.common import GPU_QUEUE, Context, progress_callback, user_errors

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "assets" / "examples"
MEASURE, ANCHOR = "Measure", "Add anchor"
ANCHOR_HEADERS = ["x (px)", "y (px)", "true depth (m)"]


def example_photos() -> list[str]:
    return sorted(str(p) for p in EXAMPLES_DIR.glob("*.jpg")) if EXAMPLES_DIR.is_dir() else []


def build(ctx: Context) -> None:
    """Lay out the tab and wire its events (inside a ``gr.Blocks`` context)."""
    state = gr.State(None)
    with gr.Row():
        with gr.Column(scale=2, min_width=300):
            photo = gr.Image(label="Photo", type="filepath", image_mode=None,
                             sources=["upload", "clipboard"], elem_id="predict-photo",
                             height=320)
            model = gr.Dropdown(ctx.dropdown_choices(), value=ctx.default_model(),
                                label="Model (kind · weights)", elem_id="predict-model")
            with gr.Accordion("Camera (optional)", open=False):
                focal_px = gr.Number(None, label="Focal length (px)", minimum=0)
                focal_35 = gr.Number(None, label="Focal length, 35 mm equivalent (mm)",
                                     minimum=0)
                fov = gr.Number(None, label="Horizontal field of view (deg)", minimum=0,
                                maximum=179)
            with gr.Row():
                cmap = gr.Dropdown(list(visuals.COLORMAPS), value="turbo", label="Colour map")
                inverse = gr.Checkbox(True, label="Colour by inverse depth (1/z)",
                                      info="near is always the warm end")
            run = gr.Button("Estimate depth", variant="primary", elem_id="predict-run")
            photos = example_photos()
            if photos:
                gr.Examples(photos, inputs=[photo], label="Examples (credits in "
                            "assets/examples/CREDITS.md)", examples_per_page=4)
        with gr.Column(scale=3, min_width=400):
            slider = gr.ImageSlider(label="Photo | depth", format="png", elem_id="predict-slider",
                                    interactive=False, max_height=520)
            info = gr.Markdown(elem_classes=["dw-info"], elem_id="predict-info")
    # No tabs here: a gr.Model3D that receives its value while hidden stays blank.
    with gr.Row():
        with gr.Column(scale=3, min_width=400):
            plot = gr.Plot(label="3D mesh (about 256x192 vertices)", elem_id="predict-plot")
        with gr.Column(scale=2, min_width=300):
            model3d = gr.Model3D(label="Full-resolution mesh (GLB: 512x384 vertices, "
                                 "full-resolution texture)", height=300,
                                 camera_position=studio.GLB_CAMERA, elem_id="predict-model3d")
            normals = gr.Image(label="Surface normals", interactive=False, format="jpeg",
                               height=260, elem_id="predict-normals")
    downloads = gr.File(label="Downloads: .npy (float32), 16-bit .png + .json sidecar, "
                        "colour .png, .glb, .ply", file_count="multiple", interactive=False,
                        elem_id="predict-downloads")
    with gr.Accordion("Measure and scale anchors", open=True):
        gr.Markdown("Click the photo. **Measure**: two clicks give the depth at each point and "
                    "their 3D distance (metric depth only). **Add anchor**: type the true depth "
                    "of a point, then click it; **Align** turns a relative prediction metric "
                    "(least squares in the model's own space).")
        with gr.Row():
            clicks = gr.Image(label="Click here", interactive=False, format="jpeg",
                              elem_id="predict-clicks", height=420)
            with gr.Column():
                mode = gr.Radio([MEASURE, ANCHOR], value=MEASURE, label="Click mode")
                true_depth = gr.Number(None, label="True depth of the next anchor (m)",
                                       minimum=0, elem_id="predict-anchor-depth")
                anchors = gr.Dataframe(headers=ANCHOR_HEADERS, datatype="number",
                                       column_count=(3, "fixed"), type="array",
                                       interactive=True, label="Anchors",
                                       elem_id="predict-anchors")
                with gr.Row():
                    align = gr.Button("Align to anchors", variant="primary",
                                      elem_id="predict-align")
                    clear = gr.Button("Clear points and alignment")
                readout = gr.Markdown(elem_id="predict-measure")

    first_outputs = [slider, info, clicks, readout, state, plot, model3d, downloads, normals]

    def show_first(st: studio.StudioState, first: studio.FirstPicture) -> tuple:
        """Slider and info; the 3D view, GLB viewer, downloads and normals are emptied until
        their own steps (``finish``) fill them."""
        picture = visuals.mark_points(st.rgb, st.points, [(u, v) for u, v, _ in st.anchors])
        return (first.slider, studio.info_markdown(first.info), picture,
                studio.measure_text(st), st, None, None, None, None)

    def on_view3d(st):
        if st is None:
            return gr.skip()
        with user_errors("draw the 3D view"):
            return studio.figure_3d(st)

    def on_glb(st):
        if st is None:
            return gr.skip()
        with user_errors("write the 3D file"):
            glb = studio.glb_file(st, ctx.new_request_dir())
        return str(glb) if glb else None

    def on_files(st, cm, glb):
        if st is None:
            return gr.skip(), gr.skip()
        with user_errors("write the downloads"):
            files, picture, note = studio.download_files(st, ctx.new_request_dir(), cmap=cm)
        return [str(p) for p in files] + ([glb] if glb else []), gr.Image(picture, label=note)

    def finish(event) -> None:
        """After the slider, outside the model queue: the plotly 3D view, then the GLB alone
        (the viewer does not wait for the other files), then the downloads and normals."""
        event.success(on_view3d, [state], [plot], api_visibility="private").success(
            on_glb, [state], [model3d], api_visibility="private").success(
            on_files, [state, cmap, model3d], [downloads, normals], api_visibility="private")

    def on_predict(image, name, fpx, f35, fov_deg, cm, inv, progress=gr.Progress()):  # noqa: B008
        report = progress_callback(progress)
        with user_errors("estimate depth"):
            camera = studio.camera_hint(fpx, f35, fov_deg)
            st = studio.run_prediction(image, name, camera, ctx.settings,
                                       predict_fn=ctx.predict_fn, progress=report)
            first = studio.first_picture(st, cmap=cm, inverse=inv, figure=False)
        return (*show_first(st, first), [])

    finish(run.click(on_predict, [photo, model, focal_px, focal_35, fov, cmap, inverse],
                     [*first_outputs, anchors], api_visibility="private", **GPU_QUEUE))

    def on_style(st, cm, inv):
        if st is None:
            return gr.skip()
        with user_errors("redraw the depth picture"):
            return studio.slider_pictures(st, cm, inv)

    for control in (cmap, inverse):
        control.change(on_style, [state, cmap, inverse], [slider], api_visibility="private")

    def on_click(st, click_mode, depth, table, evt: gr.SelectData):
        if st is None:
            raise gr.Error("Estimate depth first, then click the photo.", print_exception=False)
        u, v = (int(c) for c in evt.index[:2])
        rows = [r for r in (table or []) if r and r[0] not in (None, "")]
        if click_mode == ANCHOR:
            if depth is None or not depth > 0:
                raise gr.Error("Type the true depth of the point (in metres) first, then "
                               "click it.", print_exception=False)
            rows.append([u, v, float(depth)])
        else:
            st.points = studio.add_point(st.points, u, v)
        picture = visuals.mark_points(st.rgb, st.points, [(r[0], r[1]) for r in rows])
        return picture, studio.measure_text(st), st, rows

    clicks.select(on_click, [state, mode, true_depth, anchors], [clicks, readout, state, anchors],
                  api_visibility="private")

    def on_align(st, table, cm, inv):
        if st is None:
            raise gr.Error("Estimate depth first.", print_exception=False)
        with user_errors("align to the anchors"):
            rows = [r for r in (table or []) if r and all(x not in (None, "") for x in r[:3])]
            st = studio.align(st, [(float(r[0]), float(r[1]), float(r[2])) for r in rows])
            first = studio.first_picture(st, cmap=cm, inverse=inv, figure=False)
        return show_first(st, first)

    finish(align.click(on_align, [state, anchors, cmap, inverse], first_outputs,
                       api_visibility="private"))

    def on_clear(st, cm, inv):
        if st is None:
            return gr.skip()
        with user_errors("clear the points"):
            st.points, st.anchors, st.aligned, st.alignment = [], [], None, None
            first = studio.first_picture(st, cmap=cm, inverse=inv, figure=False)
        return (*show_first(st, first), [])

    finish(clear.click(on_clear, [state, cmap, inverse], [*first_outputs, anchors],
                       api_visibility="private"))
    build_api(ctx)


def build_api(ctx: Context) -> None:
    """``/predict``: (image file, model, focal_px, focal_35mm, fov_deg, anchors JSON) ->
    (depth .npy, 16-bit .png, .json sidecar, colour .png, .glb, info dict)."""
    with gr.Column(visible=False):
        image_in = gr.File(label="image", type="filepath")
        model_in = gr.Textbox(label="model", value=ctx.default_model() or "")
        focal_px_in = gr.Number(0, label="focal_px")
        focal_35_in = gr.Number(0, label="focal_35mm")
        fov_in = gr.Number(0, label="fov_deg")
        anchors_in = gr.Textbox("", label="anchors")
        outs = [gr.File(label=n) for n in ("depth_npy", "depth_png16", "sidecar_json",
                                           "depth_color_png", "mesh_glb")]
        info = gr.JSON(label="info")
        trigger = gr.Button("predict")

    def api_predict(image, model, focal_px=0.0, focal_35mm=0.0, fov_deg=0.0, anchors="",
                    progress=gr.Progress()):  # noqa: B008
        """Depth of one photo; 0 means unknown; anchors: JSON [[u, v, depth_m], ...] or ""."""
        report = progress_callback(progress)
        with user_errors("estimate depth"):
            camera = studio.camera_hint(focal_px, focal_35mm, fov_deg)
            points = studio.parse_anchors(anchors)
            st = studio.run_prediction(image, model, camera, ctx.settings,
                                       predict_fn=ctx.predict_fn, progress=report)
            if points:
                st = studio.align(st, points)
            view = studio.render(st, ctx.new_request_dir(), figure=False, progress=report)
        files = [view.file(s) for s in (".npy", ".png", ".json", "_color.png", ".glb")]
        return (*[str(f) if f else None for f in files], studio.json_safe(view.info))

    inputs = [image_in, model_in, focal_px_in, focal_35_in, fov_in, anchors_in]
    trigger.click(api_predict, inputs, [*outs, info],
                  api_name="predict", **GPU_QUEUE)
