"""A launched app behind the request guards, for the hardening tests (real HTTP, real process).

:func:`seed_users` migrates a fresh SQLite database and adds ``boss`` (admin), ``rev``
(reviewer), ``view`` (viewer) and ``temp`` (reviewer). :func:`start_hardened` runs this file as
a script (``python hardened_server.py PORT``): the whole server of :mod:`depthweb.server`
(Studio at ``/``, review platform at ``/review``, every guard), the Studio with tiny local
models; the child prints ``HARDENED_URL <url>`` once it serves.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]

READY = "HARDENED_URL "
PASSWORD = "correct horse battery"
USERS = {"boss": "admin", "rev": "reviewer", "view": "viewer", "temp": "reviewer"}


@dataclass
class Hardened:
    url: str
    root: Path
    process: object
    log_path: Path
    env: dict

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def review_url(self) -> str:
        return f"{self.url}/review"

    @property
    def gradio_temp(self) -> Path:
        return Path(self.env["GRADIO_TEMP_DIR"])

    @property
    def outputs(self) -> Path:
        return Path(self.env["DEPTHWEB_OUTPUT_DIR"])

    def settings(self):
        from depthweb.config import Settings

        return Settings(data_dir=Path(self.env["DEPTHWEB_DATA_DIR"]), device="cpu")

    def rss_kib(self) -> int:
        """The server's resident memory (``VmRSS`` of ``/proc/<pid>/status``) in KiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS line")

    def stop(self) -> None:
        import subprocess

        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def fn_index(client: httpx.Client, api_name: str) -> int:
    deps = client.get("/config").json()["dependencies"]
    return next(d["id"] for d in deps if d.get("api_name") == api_name)


def user_names(app: Hardened) -> set[str]:
    from depthweb.services.review import ReviewContext
    from depthweb.store.auth import list_users

    with ReviewContext.from_settings(app.settings()) as ctx, ctx.session(readonly=True) as s:
        return {u.name for u in list_users(s)}


def cli(app: Hardened, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = {**app.env, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "depthweb", *args], input=stdin, env=env,
                          capture_output=True, text=True, timeout=120, cwd=app.root)


def photo(tmp_path: Path, size: tuple[int, int], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).resize(size)
    path = tmp_path / f"photo-{size[0]}x{size[1]}-{seed}.png"
    img.save(path)
    return path


def seed_users(data_dir: Path) -> None:
    from argon2 import PasswordHasher

    from depthweb.config import Settings
    from depthweb.services.review import ReviewContext
    from depthweb.store import SYSTEM, create_user, upgrade

    settings = Settings(data_dir=data_dir, device="cpu")
    upgrade(settings.resolved_database_url)
    fast = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    with ReviewContext.from_settings(settings) as ctx, ctx.session() as s:
        for name, role in USERS.items():
            create_user(session=s, actor=SYSTEM, name=name, password=PASSWORD, role=role,
                        hasher=fast)


def start_hardened(root: Path, model_dir: Path | None = None, extra_env: dict | None = None,
                   timeout_s: float = 180.0) -> Hardened:
    """Serve the guarded app over ``root/data`` in a subprocess; wait until it serves."""
    from tests.app.studio_server import RELATIVE_MODEL, free_port, launch_and_wait

    (root / "cwd").mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "DEPTHWEB_DATA_DIR": str(root / "data"), "DEPTHWEB_OUTPUT_DIR": str(root / "outputs"),
        "DEPTHWEB_REVIEW": "auto", "DEPTHWEB_DEVICE": "cpu", "DEPTHWEB_MAX_UPLOAD_MB": "8",
        "DEPTHWEB_DEFAULT_MODEL": RELATIVE_MODEL,
        "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(root / "hf-cache"),
        "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(root / "gradio"),
        "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
    }
    for key in ("DEPTHWEB_DATABASE_URL", "DEPTHWEB_MODEL_DIR"):
        env.pop(key, None)
    if model_dir is not None:
        env["DEPTHWEB_MODEL_DIR"] = str(model_dir)
    env.update(extra_env or {})
    log_path = root / f"server-{len(list(root.glob('server-*.log')))}.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), str(free_port())]
    proc, url = launch_and_wait(cmd, root / "cwd", env, log_path, READY, timeout_s)
    server = Hardened(url, root, proc, log_path, env)
    if not url:
        server.stop()
        raise RuntimeError(f"the hardened app did not start in {timeout_s:.0f} s:\n{server.log()}")
    return server


def _serve(port: int) -> None:
    import logging
    import threading

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from depthweb.server import start_in_thread

    running = start_in_thread(host="127.0.0.1", port=port, timeout_s=300)
    print(f"{READY}{running.url.rstrip('/')}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
