"""Video tab: a clip in, the side-by-side depth video, downloads and a frame's 3D view out.

Also registers the ``video`` API endpoint (clip file in, files + JSON out). Model calls share
the Studio's GPU queue (``GPU_QUEUE``) and the process-wide model queue
(:mod:`depthweb.services.model_queue`); on ZeroGPU the whole clip is one ``spaces.GPU`` call
whose duration is derived from its frame count (``DEPTHWEB_VIDEO_GPU_S_PER_FRAME``).
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import gradio as gr

from depthweb.config import Settings
from depthweb.services import model_queue
from depthweb.services import video as video_service
from depthweb.services.studio import json_safe
from depthweb.ui.common import GPU_QUEUE, Context, progress_callback, user_errors

GPU_BASE_S = 20


def clip_runner(settings: Settings) -> Callable:
    """:func:`video_service.predict_clip` taking one turn of the process-wide model queue per
    clip; on ZeroGPU also one ``spaces.GPU`` call whose duration comes from the clip's frame
    count (``20 s + frames x video_gpu_s_per_frame``, at most the queue's per-call cap); no
    progress callback crosses into the GPU worker there."""

    def duration(frames, *args, **kwargs) -> int:
        wanted = GPU_BASE_S + len(frames) * settings.video_gpu_s_per_frame
        return int(min(model_queue.ZERO_GPU_MAX_S, wanted))

    call = model_queue.model_call(video_service.predict_clip, "studio video", duration)
    if not model_queue.on_zero_gpu():
        return call

    def run(frames, model, *, progress=None, **kwargs):
        return call(frames, model, **kwargs)

    return run


def _caps(settings: Settings) -> str:
    return (f"At most {settings.video_max_frames} frames per clip (after the stride), "
            f"{settings.video_max_seconds:g} s and {int(settings.max_upload_mb)} MB; frames are "
            f"processed at up to {settings.video_max_side} px on their longer side.")


def _layout(ctx: Context) -> SimpleNamespace:
    """The tab's widgets (inside a ``gr.Blocks`` context)."""
    settings, w = ctx.settings, SimpleNamespace()
    with gr.Row():
        with gr.Column(scale=2, min_width=300):
            w.clip = gr.Video(label="Clip (MP4, MOV, WebM)", sources=["upload"],
                              include_audio=True, elem_id="video-in", height=300)
            w.model = gr.Dropdown(ctx.dropdown_choices(), value=ctx.default_model(),
                                  label="Model (kind · weights)", elem_id="video-model")
            with gr.Row():
                w.stride = gr.Number(1, label="Stride (every k-th frame)", precision=0,
                                     minimum=1, elem_id="video-stride")
                w.max_frames = gr.Number(0, label="Max frames (0: up to the cap)",
                                         precision=0, minimum=0, elem_id="video-max-frames")
            w.max_side = gr.Slider(64, settings.video_max_side, step=32,
                                   value=min(384, settings.video_max_side),
                                   label="Longer side of processed frames (px)")
            w.run = gr.Button("Estimate video depth", variant="primary", elem_id="video-run")
            gr.Markdown(_caps(settings))
        with gr.Column(scale=3, min_width=400):
            w.out = gr.Video(label="Photo | depth (one colour scale for the clip)",
                             interactive=False, loop=True, elem_id="video-out", height=360)
            w.info = gr.Markdown(elem_classes=["dw-info"], elem_id="video-info")
    w.frame = gr.Slider(0, 1, value=0, step=1, label="Frame for the 3D view",
                        elem_id="video-frame")
    w.plot = gr.Plot(label="3D view of the chosen frame", elem_id="video-plot")
    w.downloads = gr.File(label="Downloads: side-by-side .webm, float16 .npz, .json sidecar",
                          file_count="multiple", interactive=False,
                          elem_id="video-downloads")
    return w


def build(ctx: Context) -> None:
    """Lay out the tab and wire its events (inside a ``gr.Blocks`` context)."""
    settings, runner = ctx.settings, clip_runner(ctx.settings)
    state = gr.State(None)
    w = _layout(ctx)

    def on_run(path, name, k_stride, n_max, side, progress=gr.Progress()):  # noqa: B008
        if not path:
            raise gr.Error("Upload a video clip first.", print_exception=False)
        with user_errors("estimate the depth of the video"):
            result = video_service.process_video(
                path, name, ctx.new_request_dir(), stride=int(k_stride or 1),
                max_frames=int(n_max) if n_max else None, max_side=int(side),
                settings=settings, predict_fn=runner, progress=progress_callback(progress))
            small = video_service.preview(result)
            figure = video_service.frame_figure(small, 0)
        return (str(result.file(".webm")), video_service.summary_markdown(result),
                [str(f) for f in result.files],
                gr.Slider(0, max(len(small.depth) - 1, 1), value=0, step=1), figure, small)

    w.run.click(on_run, [w.clip, w.model, w.stride, w.max_frames, w.max_side],
                [w.out, w.info, w.downloads, w.frame, w.plot, state], api_visibility="private",
                **GPU_QUEUE)

    def on_frame(small, k):
        if small is None:
            return gr.skip()
        with user_errors("show the frame in 3D"):
            return video_service.frame_figure(small, int(k))

    w.frame.release(on_frame, [state, w.frame], [w.plot], api_visibility="private")
    build_api(ctx, runner)


def build_api(ctx: Context, runner: Callable) -> None:
    """``/video``: (clip file, model, max_frames, stride, max_side, cloud_frame) ->
    (side-by-side .webm, depth .npz, .json sidecar, frame .ply or None, info dict)."""
    with gr.Column(visible=False):
        clip_in = gr.File(label="video", type="filepath")
        model_in = gr.Textbox(label="model", value=ctx.default_model() or "")
        max_frames_in = gr.Number(0, label="max_frames", precision=0)
        stride_in = gr.Number(1, label="stride", precision=0)
        max_side_in = gr.Number(0, label="max_side", precision=0)
        cloud_in = gr.Number(-1, label="cloud_frame", precision=0)
        outs = [gr.File(label=n) for n in ("video_webm", "depth_npz", "sidecar_json",
                                           "cloud_ply")]
        info = gr.JSON(label="info")
        trigger = gr.Button("video")

    def api_video(video, model, max_frames=0, stride=1, max_side=0, cloud_frame=-1,
                  progress=gr.Progress()):  # noqa: B008
        """Depth of a clip; 0 means "the settings' cap"; cloud_frame -1: no point cloud."""
        if not video:
            raise gr.Error("Send a video file.", print_exception=False)
        with user_errors("estimate the depth of the video"):
            result = video_service.process_video(
                video, model, ctx.new_request_dir(), stride=int(stride or 1),
                max_frames=int(max_frames) if max_frames else None,
                max_side=int(max_side) if max_side else None,
                cloud_frame=None if cloud_frame is None or cloud_frame < 0 else int(cloud_frame),
                settings=ctx.settings, predict_fn=runner,
                progress=progress_callback(progress))
        files = [result.file(s) for s in (".webm", ".npz", ".json", ".ply")]
        meta = {"frame_count": len(result.depth), "fps": result.fps, "kind": str(result.kind),
                "segments": sum(f.reset for f in result.fits)}
        return (*[str(f) if f else None for f in files], json_safe(meta))

    inputs = [clip_in, model_in, max_frames_in, stride_in, max_side_in, cloud_in]
    trigger.click(api_video, inputs, [*outs, info], api_name="video", **GPU_QUEUE)
