"""Running the server with uvicorn: in the foreground (``python app.py``) or in a thread.

The address comes from ``GRADIO_SERVER_NAME`` (default ``127.0.0.1``; Spaces set ``0.0.0.0``)
and ``GRADIO_SERVER_PORT`` (default ``7860``), as with ``demo.launch()``; ``GRADIO_TEMP_DIR`` is
read by Gradio itself.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import uvicorn

from depthweb.config import Settings, get_settings
from depthweb.server.assembly import REVIEW_PATH, Assembly, assemble, server_address, wrap
from depthweb.server.memory import keep_freed_memory
from depthweb.services.workspace import Janitor

log = logging.getLogger(__name__)


def _config(settings: Settings, host: str, port: int) -> tuple[uvicorn.Config, Assembly]:
    if settings.keep_freed_memory:
        keep_freed_memory()  # before any thread starts: threads then share one heap
    # Old files out first, then on a schedule: building the Blocks already copies example
    # files into Gradio's temp folder, which a clean-up after it would delete.
    Janitor.from_settings(settings).start()
    assembly = assemble(settings)
    app = wrap(assembly.app, settings)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on",
                            ws="none", timeout_graceful_shutdown=5,
                            proxy_headers=False)  # client addresses: DEPTHWEB_TRUSTED_PROXIES
    return config, assembly


def _url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{shown}:{port}/"


def serve(settings: Settings | None = None) -> None:
    """Serve both apps until interrupted (blocking)."""
    settings = settings or get_settings()
    host, port = server_address()
    config, assembly = _config(settings, host, port)
    url = _url(host, port)
    log.info("depthweb Studio at %s%s", url, f"; review platform at {url.rstrip('/')}"
             f"{REVIEW_PATH}/" if assembly.review is not None else "")
    uvicorn.Server(config).run()


@dataclass
class RunningServer:
    """A server running in a background thread; ``url`` ends with ``/``."""

    url: str
    review_url: str | None
    server: uvicorn.Server
    thread: threading.Thread
    assembly: Assembly

    def close(self, timeout_s: float = 15.0) -> None:
        """Stop serving and wait for the thread."""
        self.server.should_exit = True
        self.thread.join(timeout_s)


def start_in_thread(settings: Settings | None = None, host: str = "127.0.0.1",
                    port: int | None = None, timeout_s: float = 60.0) -> RunningServer:
    """Start the server in a daemon thread and wait until it accepts requests."""
    settings = settings or get_settings()
    port = server_address()[1] if port is None else port
    config, assembly = _config(settings, host, port)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="depthweb-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.05)
    url = _url(host, port)
    review_url = f"{url.rstrip('/')}{REVIEW_PATH}/" if assembly.review is not None else None
    return RunningServer(url, review_url, server, thread, assembly)
