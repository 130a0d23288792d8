"""Gradio's file routes serve nothing outside the app's output folders.

Against the review app (anonymous and logged in as the admin) and the public Studio, every file
route Gradio 6.31 has (``/gradio_api/file=``, ``/gradio_api/file/``, ``/file=``, ``/static/``,
``/assets/``, ``/gradio_api/custom_component/``) is asked for the SQLite database and its -wal
and -shm siblings, a blob file, an export, the students registry, the code, the server log,
the teacher weights, the server's environment and ``/etc/passwd``: absolute, percent-encoded,
``..`` from every served folder (literal, encoded, double-encoded, backslashes), relative to the
working directory, via ``/proc/self`` and with a NUL byte. Symlinks planted in the served
folders are not followed out. A file in the output folder is served (the probes can succeed).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.security.conftest import STUDENT_PROBE
from tests.security.probes import leaks, raw_get

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def studio(tmp_path_factory, pytestconfig):
    from tests.app.studio_server import shared_studio

    return shared_studio(tmp_path_factory, pytestconfig)


def served_folders(root: Path) -> dict[str, Path]:
    """The folders a test server serves or runs in (see tests/app/studio_server.py)."""
    folders = {"outputs": root / "outputs", "gradio": root / "gradio", "cwd": root / "cwd"}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    return folders


@pytest.fixture(scope="module")
def wal_with_frames(sec_server):
    """A write whose connection stays open for the module, so the -wal file holds frames
    (SQLite empties it at a checkpoint when the last connection closes)."""
    from sqlalchemy import text

    from depthweb.services.review import ReviewContext

    with ReviewContext.from_settings(sec_server.settings()) as ctx:
        with ctx.session() as s:  # flipped twice in one transaction: no visible change
            for _ in range(2):
                s.execute(text("UPDATE users SET active = NOT active WHERE name = 'boss'"))
        with ctx.engine.connect():
            yield


def review_private_files(server) -> dict[str, Path]:
    data = server.data_dir
    db = data / "depthweb.sqlite"
    files = {
        "db": db, "db-wal": db.with_name(db.name + "-wal"),
        "db-shm": db.with_name(db.name + "-shm"),
        "blob": next(p for p in sorted((data / "blobs").rglob("*")) if p.is_file()),
        "export": data / "exports" / "seed-v1" / "manifest.jsonl",
        "students": data / "students" / STUDENT_PROBE / "meta.json",
        "teacher": Path(server.teacher_weights) / "config.json",
        "log": server.log_path, "environ": Path(f"/proc/{server.process.pid}/environ"),
        "code": REPO / "depthweb" / "config.py", "passwd": Path("/etc/passwd"),
    }
    missing = [n for n, p in files.items() if not p.is_file()]
    assert not missing, f"probe targets missing: {missing}"
    return files


def cookie_of(client) -> str:
    return "; ".join(f"{k}={v}" for k, v in client.cookies.items())


@pytest.mark.parametrize("who", [None, "boss"])
@pytest.mark.usefixtures("wal_with_frames")
def test_the_review_app_serves_no_private_file(sec_server, http, who):
    folders = served_folders(sec_server.root)
    cookie = cookie_of(http(who)) if who else ""
    found = leaks(sec_server.url, review_private_files(sec_server), folders, folders["cwd"],
                  cookie)
    assert not found, found[:20]


def test_the_studio_serves_no_private_file(studio, sec_server):
    folders = served_folders(studio.root)
    targets = {"other app's db": sec_server.data_dir / "depthweb.sqlite",
               "passwd": Path("/etc/passwd"), "code": REPO / "depthweb" / "config.py",
               "log": studio.log_path, "environ": Path(f"/proc/{studio.process.pid}/environ")}
    found = leaks(studio.url, targets, folders, folders["cwd"])
    assert not found, found[:20]


@pytest.fixture
def planted():
    """``planted(folder, private, data_dir)``: symlinks in ``folder/probe-links`` to private
    files and to the data dir (name -> link); all removed afterwards (links unlinked, never
    followed), so the shared Studio's output folder is left as it was."""
    made: list[Path] = []

    def _plant(folder: Path, private: dict[str, Path], data_dir: Path) -> dict[str, Path]:
        probe = folder / "probe-links"
        probe.mkdir(parents=True, exist_ok=True)
        made.append(probe)
        links = {}
        for name, target in {**private, "data": data_dir}.items():
            link = probe / (name if name == "data" else f"{name}.bin")
            link.symlink_to(target, target_is_directory=target.is_dir())
            links[name] = link
        links["db via dir link"] = links.pop("data") / "depthweb.sqlite"
        return links

    yield _plant
    for probe in made:
        for entry in probe.iterdir():
            entry.unlink()
        probe.rmdir()


@pytest.mark.usefixtures("wal_with_frames")
def test_symlinks_in_served_folders_are_not_followed_out(sec_server, http, studio, planted):
    private = {k: v for k, v in review_private_files(sec_server).items()
               if k in ("db", "blob", "passwd", "export")}
    apps = [(sec_server, cookie_of(http("boss"))), (studio, "")]
    for server, cookie in apps:
        folders = served_folders(server.root)
        links = {f: planted(folders[f], private, sec_server.data_dir)
                 for f in ("outputs", "gradio")}
        allowed = folders["outputs"] / "probe-links" / "allowed.txt"
        allowed.write_text("served on purpose\n")
        status, body = raw_get(server.url, f"/gradio_api/file={allowed}", cookie)
        assert (status, body) == (200, b"served on purpose\n")  # the route itself works
        for folder, planted_links in links.items():
            for name, link in planted_links.items():
                status, body = raw_get(server.url, f"/gradio_api/file={link}", cookie)
                target = private.get(name, sec_server.data_dir / "depthweb.sqlite")
                assert status in (403, 404), (server.url, folder, name, status)
                assert target.read_bytes()[:32] not in body


def test_the_file_route_fetches_no_url_for_a_client(sec_server, http, studio):
    """``file=<url>`` and ``proxy=<url>`` refuse local addresses (no server-side request
    forgery against the app itself or anything on its network)."""
    inside = sec_server.data_dir / "depthweb.sqlite"
    for server, cookie in ((sec_server, cookie_of(http("boss"))), (studio, "")):
        for form in (f"/gradio_api/file={server.url}gradio_api/file={inside}",
                     "/gradio_api/file=http://127.0.0.1:22/", "/gradio_api/file=http://[::1]/",
                     f"/gradio_api/proxy={server.url}gradio_api/file={inside}",
                     "/gradio_api/file=http://169.254.169.254/latest/meta-data/"):
            status, body = raw_get(server.url, form, cookie)
            assert status in (400, 403, 404), (form, status)
            assert b"SQLite format 3" not in body


def test_the_probes_recognise_a_server_that_leaks(tmp_path):
    """The probe set finds the files on a server that serves the whole disk (so an empty
    result above means refusals, not probes that never reach anything)."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory="/")
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        found = leaks(url, {"passwd": Path("/etc/passwd")}, {"tmp": tmp_path}, tmp_path)
    finally:
        server.shutdown()
    assert any(form.startswith("/static/") or "%2e%2e" in form for form, _ in found)
