"""Launch the Studio in a subprocess with tiny local models, for gradio_client and browser tests.

``start_studio(root)`` builds tiny random-weight Depth Anything V2 models (relative and metric
indoor) into ``root/models/<model name>/``, then runs this file as a script
(``python studio_server.py PORT``: the whole server of ``depthweb.server``, the Studio at
``/``) with an environment that points the app at them
(``DEPTHWEB_MODEL_DIR``), keeps every output under ``root`` and works offline. The child
process's working directory is an empty folder (``root/cwd``) so tests can check that the app
writes nothing there. The child prints ``STUDIO_URL <url>`` once it serves requests.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
READY = "STUDIO_URL "
RELATIVE_MODEL = "depth-anything-v2-small"
METRIC_MODEL = "depth-anything-v2-metric-indoor-small"
MAX_PIXELS = 6_000_000
MAX_UPLOAD_MB = 8


@dataclass
class StudioServer:
    url: str
    root: Path
    cwd: Path
    output_dir: Path
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def build_models(model_dir: Path) -> None:
    """Tiny DA-V2 relative and metric-indoor models under their registry names.

    Runs inside pytest, where ``tests/`` (and so ``builders``) is importable.
    """
    from builders import build_tiny_depth_anything

    scratch = model_dir.parent / "model-build"
    targets = {RELATIVE_MODEL: {}, METRIC_MODEL: {"metric": True, "max_depth": 20}}
    for name, kwargs in targets.items():
        built = build_tiny_depth_anything(scratch / name, **kwargs)
        shutil.move(str(built), str(model_dir / name))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch_and_wait(
    cmd: list[str], cwd: Path, env: dict, log_path: Path, ready: str, timeout_s: float
) -> tuple[subprocess.Popen, str]:
    """Start a server process, copy its output to ``log_path``, wait for a ``ready`` line.

    Returns the process and the URL printed after ``ready`` ("" if it never came).
    """
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    url_box: list[str] = []
    done = threading.Event()

    def pump() -> None:
        with log_path.open("w") as log:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                if line.startswith(ready):
                    url_box.append(line[len(ready):].strip())
                    done.set()
        done.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout_s
    while not done.wait(0.2) and time.monotonic() < deadline:
        pass
    return proc, url_box[0] if url_box else ""


def start_studio(root: Path, timeout_s: float = 300.0, *, models: bool = True) -> StudioServer:
    """Build the models, start the app in a subprocess and wait until it serves.

    ``models=False``: no model besides the bundled student (a visitor's offline machine).
    """
    root = Path(root)
    model_dir, cwd, out = root / "models", root / "cwd", root / "outputs"
    for d in (model_dir, cwd):
        d.mkdir(parents=True, exist_ok=True)
    if models:
        build_models(model_dir)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "DEPTHWEB_MODEL_DIR": str(model_dir), "DEPTHWEB_OUTPUT_DIR": str(out),
        "DEPTHWEB_DATA_DIR": str(root / "data"), "DEPTHWEB_DEVICE": "cpu",
        "DEPTHWEB_MAX_PIXELS": str(MAX_PIXELS), "DEPTHWEB_MAX_UPLOAD_MB": str(MAX_UPLOAD_MB),
        "DEPTHWEB_DEFAULT_MODEL": RELATIVE_MODEL,
        "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(root / "hf-cache"),
        "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(root / "gradio"),
        "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "2",
    }
    log_path = root / "server.log"
    port = free_port()
    proc, url = launch_and_wait([sys.executable, str(Path(__file__).resolve()), str(port)],
                                cwd, env, log_path, READY, timeout_s)
    server = StudioServer(url, root, cwd, out, proc, log_path)
    if not url:
        server.stop()
        raise RuntimeError(f"the Studio did not start within {timeout_s:.0f} s:\n{server.log()}")
    return server


_shared: list[StudioServer] = []


def shared_studio(tmp_path_factory, config) -> StudioServer:
    """One Studio per test session, shared by ``tests/app`` and ``tests/e2e`` (stopped when
    the session ends)."""
    if not _shared or _shared[0].process.poll() is not None:
        server = start_studio(tmp_path_factory.mktemp("studio"))
        config.add_cleanup(server.stop)
        _shared[:] = [server]
    return _shared[0]


def serve_in_child(port: int, ready: str, review: bool = False) -> None:
    """The child's side: serve the whole server (``depthweb.server``) on ``port``, print
    ``ready`` and the Studio's URL (``review``: the review platform's URL), then serve."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from depthweb.config import get_settings
    from depthweb.server import start_in_thread

    running = start_in_thread(get_settings(), "127.0.0.1", port, timeout_s=600)
    print(f"{ready}{running.review_url if review else running.url}", flush=True)
    running.thread.join()


if __name__ == "__main__":
    serve_in_child(int(sys.argv[1]), READY)
