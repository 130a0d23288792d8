"""What Gradio may serve, decided by our settings: with the defaults the database, the blob store,
the students registry and the code lie outside every served folder; a configuration that would
put them inside one is refused at start; the data dir and the SQLite file with its -wal/-shm
siblings are ``blocked_paths``; and the review pictures Gradio copies into its temp dir are
deleted on the output schedule (not kept for the life of the process)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from depthweb.config import Settings, get_settings
from depthweb.errors import DepthwebError
from depthweb.ui.common import served_folders, served_paths

REPO = Path(__file__).resolve().parents[2]


def _private(settings: Settings) -> list[Path]:
    data = Path(settings.data_dir)
    db = Path(settings.resolved_database_url.removeprefix("sqlite:///"))
    return [data, db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"),
            data / "blobs", data / "students", data / "exports", data / "runs",
            REPO / "depthweb", REPO / "app.py", REPO / "tests"]


def _inside(path: Path, folder: Path) -> bool:
    return path.expanduser().resolve().is_relative_to(folder.expanduser().resolve())


def test_the_default_settings_keep_private_files_out_of_every_served_folder(monkeypatch,
                                                                             tmp_path):
    from gradio.data_classes import _StaticFiles

    for var in ("DEPTHWEB_DATA_DIR", "DEPTHWEB_OUTPUT_DIR", "DEPTHWEB_DATABASE_URL",
                "XDG_DATA_HOME", "GRADIO_TEMP_DIR", "GRADIO_EXAMPLES_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(REPO)  # `python app.py` from a checkout
    get_settings.cache_clear()
    settings = get_settings()
    kwargs = served_paths(settings)
    served = [*served_folders(settings).values(), *map(Path, kwargs["allowed_paths"]),
              *map(Path, _StaticFiles.all_paths)]
    assert Path(kwargs["allowed_paths"][0]) == Path(settings.output_dir)
    exposed = [(p, f) for p in _private(settings) for f in served if _inside(p, f)]
    assert not exposed, exposed
    db = str(Path(settings.resolved_database_url.removeprefix("sqlite:///")).resolve())
    assert {db, f"{db}-wal", f"{db}-shm", str(Path(settings.data_dir).resolve())} \
        <= set(kwargs["blocked_paths"])


@pytest.mark.parametrize("layout", ["data-in-output", "output-in-data", "temp-is-data",
                                    "db-in-output", "code-in-output"])
def test_a_layout_that_would_serve_private_files_is_refused(tmp_path, monkeypatch, layout):
    from depthweb.ui.app import review_mount_kwargs, studio_mount_kwargs

    data, out = tmp_path / "data", tmp_path / "out"
    kwargs = {"data-in-output": dict(output_dir=tmp_path),
              "output-in-data": dict(output_dir=data / "outputs"),
              "temp-is-data": {},
              "db-in-output": dict(database_url=f"sqlite:///{out}/review.sqlite"),
              "code-in-output": dict(output_dir=REPO)}[layout]
    if layout == "temp-is-data":
        monkeypatch.setenv("GRADIO_TEMP_DIR", str(data / "gradio"))
    settings = Settings(**{"data_dir": data, "output_dir": out, "review": "off", **kwargs})
    for mount_kwargs in (studio_mount_kwargs, review_mount_kwargs):
        with pytest.raises(DepthwebError, match="could serve private files"):
            mount_kwargs(settings)
    monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)
    assert served_paths(Settings(data_dir=data, output_dir=out))["allowed_paths"] == [str(out)]


@pytest.mark.parametrize("blocked", [True, False])
def test_blocked_paths_stop_a_handler_from_handing_out_the_wal_file(tmp_path, blocked):
    """Gradio copies any handler output under the temp dir or the working directory into its
    cache and serves it; the -wal sibling of the database is refused because it is blocked
    (the unblocked run shows what would happen otherwise)."""
    import gradio as gr
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    from tests.app.studio_server import free_port

    settings = Settings(data_dir=tmp_path / "data", output_dir=tmp_path / "out")
    wal = tmp_path / "data" / "depthweb.sqlite-wal"
    wal.parent.mkdir(parents=True)
    wal.write_bytes(b"private frames " * 8)
    with gr.Blocks(analytics_enabled=False) as demo:
        out = gr.File()
        gr.Button().click(lambda: str(wal), None, out, api_name="leak")
    kwargs = served_paths(settings) if blocked else {}
    demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                quiet=True, **kwargs)
    try:
        client = Client(demo.local_url, verbose=False, analytics_enabled=False,
                        download_files=str(tmp_path / "dl"))
        if blocked:
            with pytest.raises(AppError):
                client.predict(api_name="/leak")
        else:
            assert Path(client.predict(api_name="/leak")).read_bytes() == wal.read_bytes()
    finally:
        demo.close()
    copies = [f for f in (tmp_path / "dl").rglob("*") if f.is_file()]
    assert any(f.read_bytes() == wal.read_bytes() for f in copies) is not blocked


def _call(client: httpx.Client, api: str, data: list) -> list:
    event = client.post(f"/gradio_api/call/{api}", json={"data": data}).json()["event_id"]
    text = client.get(f"/gradio_api/call/{api}/{event}").text
    assert "event: complete" in text, text[:300]
    return json.loads(text.split("event: complete\ndata:", 1)[1].strip().splitlines()[0])


@pytest.mark.slow
def test_review_pictures_leave_the_gradio_temp_dir_on_the_output_schedule(
    sec_server, monkeypatch, tmp_path
):
    from gradio.route_utils import delete_files_created_by_app

    from depthweb.server import start_in_thread
    from depthweb.ui.auth import clear_review_cache
    from tests.app.studio_server import free_port
    from tests.review_ui.server import PASSWORD

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    settings = sec_server.settings().model_copy(
        update={"output_dir": tmp_path / "out", "output_max_age_min": 1.0})
    clear_review_cache()
    running = start_in_thread(settings, port=free_port(), timeout_s=300)
    demo = running.assembly.review
    try:
        assert demo.delete_cache == (60, 60)  # every minute, files older than a minute
        with httpx.Client(base_url=running.review_url, timeout=60) as c:
            assert c.post("/login", data={"username": "rev", "password": PASSWORD}).is_success
            page = _call(c, "review_open", [1, None])
            files = [v for v in page if isinstance(v, dict) and v.get("url")]
            urls = [f["url"] for f in files]
            pictures = [Path(f["path"]) for f in files]
            assert len(urls) >= 3  # photo, teacher depth, label
            assert all(c.get(u).status_code == 200 for u in urls)
            assert all(_inside(p, tmp_path / "gradio") and p.is_file() for p in pictures)
            delete_files_created_by_app(demo, age=0)  # what the schedule runs
            assert [p for p in pictures if p.exists()] == []
            assert all(c.get(u).status_code in (403, 404) for u in urls)
    finally:
        running.close()
        clear_review_cache()
