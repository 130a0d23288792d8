"""Hardening, round two (issue 10): what happens across server starts, over real HTTP.

- Files from before a restart (a clean stop or a kill -9) are gone after it, on disk and over
  HTTP (item 6).
- A review database that cannot be opened at start leaves no review endpoint open: the review
  path answers "unavailable" (503), the public Studio keeps serving, the log has no traceback
  (item 5), with ``DEPTHWEB_REVIEW=auto`` and ``on``.
"""

from __future__ import annotations

import os
import signal

import httpx
import pytest
from gradio_client import Client, handle_file

from tests.app.studio_server import build_models
from tests.security.hardened_server import PASSWORD, photo, seed_users, start_hardened


@pytest.mark.parametrize("stop", ["terminate", "kill -9"])
def test_files_from_before_a_restart_are_gone_after_it(tmp_path, stop):
    root = tmp_path / "app"
    (root / "models").mkdir(parents=True)
    build_models(root / "models")
    seed_users(root / "data")
    server = start_hardened(root, root / "models")
    # The app's own example files, copied in at every start (public, re-created each time).
    examples = {p.relative_to(server.gradio_temp) for p in server.gradio_temp.rglob("*")
                if p.is_file()}
    try:
        client = Client(server.url, verbose=False, download_files=str(tmp_path / "dl"),
                        analytics_enabled=False)
        client.predict(image=handle_file(str(photo(tmp_path, (96, 64)))), api_name="/predict")
        rev = httpx.Client(base_url=server.review_url, timeout=60)
        assert rev.post("/login", data={"username": "rev", "password": PASSWORD}
                        ).status_code == 200
        upload = rev.post("/gradio_api/upload",
                          files=[("files", ("private.txt", b"private", "text/plain"))])
        private = upload.json()[0]
        assert rev.get(f"/gradio_api/file={private}").status_code == 200
        outputs = sorted(p for p in server.outputs.rglob("*") if p.is_file())
        temps = sorted(p for p in server.gradio_temp.rglob("*") if p.is_file()
                       and p.relative_to(server.gradio_temp) not in examples)
        assert outputs and temps
    finally:
        if stop == "kill -9":
            os.kill(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=30)
        server.stop()
    if stop == "kill -9":
        assert all(p.exists() for p in outputs + temps)  # nothing cleaned them on the way down
    again = start_hardened(root, root / "models")
    try:
        assert not [p for p in outputs + temps if p.exists()]
        rev = httpx.Client(base_url=again.review_url, timeout=60)
        assert rev.post("/login", data={"username": "rev", "password": PASSWORD}
                        ).status_code == 200
        assert rev.get(f"/gradio_api/file={private}").status_code in (403, 404)
        assert httpx.get(f"{again.url}/config", timeout=30).status_code == 200
    finally:
        again.stop()


@pytest.mark.parametrize("mode", ["auto", "on"])
@pytest.mark.parametrize("database", ["garbage SQLite file", "unreachable PostgreSQL"])
def test_an_unusable_database_at_start_leaves_no_review_endpoint_open(tmp_path, mode,
                                                                      database):
    root = tmp_path / "app"
    data = root / "data"
    data.mkdir(parents=True)
    env = {"DEPTHWEB_REVIEW": mode}
    if database == "garbage SQLite file":
        (data / "depthweb.sqlite").write_bytes(b"this is not an SQLite database" * 100)
    else:  # nothing listens on port 1
        env["DEPTHWEB_DATABASE_URL"] = "postgresql://depthweb:pg-pass-XYZ@127.0.0.1:1/depthweb"
    server = start_hardened(root, extra_env=env)
    try:
        review = httpx.Client(base_url=server.review_url, timeout=60)
        page = review.get("/", headers={"Accept": "text/html"})
        assert page.status_code == 503 and "unavailable" in page.text
        for method, path in [("GET", "/config"), ("POST", "/login"),
                             ("POST", "/gradio_api/queue/join"), ("GET", "/gradio_api/info"),
                             ("POST", "/gradio_api/upload"), ("GET", "/gradio_api/file=x")]:
            r = review.request(method, path, data={"username": "a", "password": "b"})
            assert r.status_code == 503, (method, path, r.status_code)
        # The public Studio keeps serving, and nothing printed a traceback.
        assert httpx.get(f"{server.url}/config", timeout=30).status_code == 200
        assert httpx.get(f"{server.url}/", timeout=30).status_code == 200
        assert "Traceback" not in server.log()
        assert "pg-pass-XYZ" not in server.log()  # the database password is never logged
        assert "review platform unavailable" in server.log()
    finally:
        server.stop()
