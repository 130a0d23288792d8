"""App start to first response: ``python app.py`` against a bare Gradio app, launched the same way.

Each run starts a fresh process and times, from just before ``Popen``: (a) the first HTTP 200
on ``/`` (polled every 50 ms) and (b) the first answered ``/predict`` through gradio_client
(client connect + upload + call + downloads). depthweb runs the real entry point (``app.py``)
with a tiny random-weight Depth Anything V2 as the default model in ``DEPTHWEB_MODEL_DIR``
(loaded lazily, so (b) includes loading it and the whole Studio response: exports, GLB, 3D
view); the baseline is a Blocks app with the same three tabs and one trivial ``/predict``
(image in, text out). Both get the same offline environment and a free port via
``GRADIO_SERVER_PORT``. Used by :mod:`bench.bench_app_start`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.common import REPO, median, subprocess_env

MODEL = "depth-anything-v2-small"
PHOTO = REPO / "assets" / "examples" / "monodepth2_test_image.jpg"  # 638x235, CC BY 2.0
BASELINE_APP = '''
import gradio as gr

def predict(image):
    return "ok"

with gr.Blocks() as demo:
    with gr.Tabs():
        for name in ("Predict", "Compare", "Stereo"):
            with gr.Tab(name):
                gr.Markdown(name)
                if name == "Predict":
                    image, out = gr.Image(type="filepath"), gr.Textbox()
                    gr.Button("Run").click(predict, image, out, api_name="predict")

if __name__ == "__main__":
    demo.launch()
'''


@dataclass
class StartTimes:
    """Seconds from process start to the first HTTP 200 on ``/`` and to the first answer."""

    http_s: float
    predict_s: float


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http_200(url: str, proc: subprocess.Popen, timeout_s: float, log: Path) -> None:
    """Poll ``url`` until it answers 200; raise when the process dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} gave no 200 within {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")


def time_start(cmd: list[str], env: dict[str, str], root: Path,
               call: Callable[[object], object], timeout_s: float = 240.0) -> StartTimes:
    """Launch ``cmd`` (which serves on ``env['GRADIO_SERVER_PORT']``) and time it."""
    from gradio_client import Client

    url = f"http://127.0.0.1:{env['GRADIO_SERVER_PORT']}/"
    log = root / f"server-{env['GRADIO_SERVER_PORT']}.log"
    downloads = root / "downloads"
    downloads.mkdir(exist_ok=True)
    with log.open("w") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=root / "cwd", env=env, stdout=out,
                                stderr=subprocess.STDOUT)
        try:
            wait_http_200(url, proc, timeout_s, log)
            http_s = time.perf_counter() - t0
            client = Client(url, verbose=False, download_files=str(downloads),
                            analytics_enabled=False)
            call(client)
            return StartTimes(http_s, time.perf_counter() - t0)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def build_model_dir(root: Path) -> Path:
    """``root/models/<MODEL>``: a tiny random-weight DA-V2 under its registry name."""
    sys.path.insert(0, str(REPO / "tests"))
    from builders import build_tiny_depth_anything

    model_dir = root / "models"
    model_dir.mkdir(parents=True, exist_ok=True)
    built = build_tiny_depth_anything(root / "model-build")
    shutil.move(str(built), str(model_dir / MODEL))
    return model_dir


def app_env(root: Path, model_dir: Path) -> dict[str, str]:
    return subprocess_env(
        DEPTHWEB_MODEL_DIR=str(model_dir), DEPTHWEB_OUTPUT_DIR=str(root / "outputs"),
        DEPTHWEB_DATA_DIR=str(root / "data"), DEPTHWEB_DEVICE="cpu", DEPTHWEB_REVIEW="off",
        DEPTHWEB_DEFAULT_MODEL=MODEL, HF_HUB_CACHE=str(root / "hf-cache"),
        GRADIO_TEMP_DIR=str(root / "gradio"), GRADIO_SERVER_NAME="127.0.0.1",
        PYTHONUNBUFFERED="1",
    )


def measure(runs: int) -> tuple[list[StartTimes], list[StartTimes]]:
    """(depthweb, baseline) start times, runs alternating so load hits both alike."""
    from gradio_client import handle_file

    def ours_call(client) -> None:
        client.predict(image=handle_file(str(PHOTO)), model=MODEL, api_name="/predict")

    def base_call(client) -> None:
        assert client.predict(image=handle_file(str(PHOTO)), api_name="/predict") == "ok"

    with tempfile.TemporaryDirectory(prefix="bench-start-") as tmp:
        root = Path(tmp)
        (root / "cwd").mkdir()
        env = app_env(root, build_model_dir(root))
        base_script = root / "baseline_app.py"
        base_script.write_text(BASELINE_APP)
        ours, base = [], []
        for _ in range(runs):
            base.append(time_start([sys.executable, str(base_script)],
                                   {**env, "GRADIO_SERVER_PORT": str(free_port())}, root,
                                   base_call))
            ours.append(time_start([sys.executable, str(REPO / "app.py")],
                                   {**env, "GRADIO_SERVER_PORT": str(free_port())}, root,
                                   ours_call))
    return ours, base


def medians(times: list[StartTimes]) -> StartTimes:
    return StartTimes(median(t.http_s for t in times), median(t.predict_s for t in times))
