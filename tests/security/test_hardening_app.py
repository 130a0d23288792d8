"""Hardening, round two (issue 10), against a launched app over real HTTP.

One server for this module (:mod:`tests.security.hardened_server`: the Studio at ``/``, the
review platform at ``/review``): users ``boss`` (admin), ``rev`` (reviewer), ``view`` (viewer)
and ``temp`` (reviewer), tiny Studio models, ``127.0.0.1`` as a trusted proxy (so tests can
speak for other client addresses through ``X-Forwarded-For``), small limits so the tests stay
fast.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file

from tests.app.studio_server import build_models
from tests.security.hardened_server import (
    PASSWORD,
    Hardened,
    cli,
    fn_index,
    photo,
    seed_users,
    start_hardened,
    user_names,
)

EVIL = "https://evil.example"
HOST = "depthweb.example.org"  # Gradio reflects any Origin under a non-localhost Host
MAX_PIXELS = 2_000_000
BUDGET_MB = 6


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Hardened:
    root = tmp_path_factory.mktemp("hardened")
    (root / "models").mkdir()
    build_models(root / "models")
    seed_users(root / "data")
    server = start_hardened(root, root / "models", {
        "DEPTHWEB_TRUSTED_PROXIES": "127.0.0.1", "DEPTHWEB_MAX_JSON_KB": "256",
        "DEPTHWEB_MAX_UPLOAD_MB": "4", "DEPTHWEB_MAX_UPLOAD_FILES": "2",
        "DEPTHWEB_PREDICT_MAX_PIXELS": str(MAX_PIXELS), "DEPTHWEB_QUEUE_PER_USER": "1",
        "DEPTHWEB_DISK_BUDGET_MB": str(BUDGET_MB), "DEPTHWEB_CLEANUP_INTERVAL_MIN": "0.02",
    })
    yield server
    server.stop()


def review_url(app: Hardened) -> str:
    return app.review_url


def studio(app: Hardened, address: str | None = None) -> httpx.Client:
    """An anonymous HTTP client of the public Studio (as seen from ``address``)."""
    headers = {"X-Forwarded-For": address} if address else {}
    return httpx.Client(base_url=app.url, timeout=60, headers=headers)


def login(app: Hardened, name: str, password: str = PASSWORD, address: str | None = None
          ) -> httpx.Client:
    """An HTTP client holding ``name``'s login cookie (as seen from ``address``)."""
    headers = {"X-Forwarded-For": address} if address else {}
    client = httpx.Client(base_url=review_url(app), timeout=60, headers=headers)
    r = client.post("/login", data={"username": name, "password": password})
    assert r.status_code == 200, r.text
    return client


def try_login(app: Hardened, name: str, password: str, address: str) -> int:
    r = httpx.post(f"{review_url(app)}/login", data={"username": name, "password": password},
                   headers={"X-Forwarded-For": address}, timeout=60)
    return r.status_code


# ------------------------------------------------------------------ 1. cross-site requests

def test_an_evil_origin_gets_no_preflight_and_cannot_create_an_admin(app):
    boss = login(app, "boss")
    index = fn_index(boss, "admin_add_user")
    evil = {"Host": HOST, "Origin": EVIL}
    pre = boss.options("/gradio_api/queue/join",
                       headers={**evil, "Access-Control-Request-Method": "POST",
                                "Access-Control-Request-Headers": "content-type"})
    assert pre.status_code == 403
    assert not [k for k in pre.headers if k.lower().startswith("access-control-")]
    body = {"data": ["mallory", "mallory's password", "admin"], "fn_index": index,
            "session_hash": "csrf-test", "event_data": None, "trigger_id": None}
    r = boss.post("/gradio_api/queue/join", json=body, headers=evil)
    assert r.status_code == 403 and "Cross-site" in r.json()["detail"]
    assert "mallory" not in user_names(app)
    # Reading is not refused, but no origin is ever echoed with credentials.
    r = boss.get("/config", headers=evil)
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    # The check can pass: the app's own origin under the same Host is let through.
    own = boss.post("/gradio_api/queue/join", headers={"Host": HOST, "Origin": f"http://{HOST}"},
                    json={**body, "data": ["", "", "viewer"]})
    assert own.status_code == 200, own.text


def test_logout_from_another_site_is_refused_and_from_the_app_works(app):
    rev = login(app, "rev")
    for headers in ({"Referer": f"{EVIL}/page"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Origin": "null"}):
        r = rev.get("/logout", headers=headers, follow_redirects=False)
        assert r.status_code == 403, headers
        assert rev.get("/config").status_code == 200  # still logged in
    cookies = dict(rev.cookies)
    r = rev.get("/logout", headers={"Referer": f"{review_url(app)}/"}, follow_redirects=False)
    assert r.status_code in (302, 307)
    replay = httpx.Client(base_url=review_url(app), cookies=cookies, timeout=30)
    assert replay.get("/config").status_code == 401  # the old cookie is revoked server-side


# ------------------------------------------------------------------ 2. huge bodies

def _rss_mib(app: Hardened) -> float:
    return app.rss_kib() / 1024


def test_a_1_gib_body_is_refused_before_it_is_read(app):
    before = _rss_mib(app)

    def body():
        chunk = b"x" * (1 << 20)
        for _ in range(1024):  # 1 GiB, streamed: this test never holds it
            yield chunk

    try:
        r = httpx.post(f"{app.url}/gradio_api/queue/join", content=body(),
                       headers={"content-type": "application/json"}, timeout=120)
        assert r.status_code == 413, r.text
    except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
        pass  # the server closed the connection after refusing: also fine
    assert _rss_mib(app) - before < 50
    # Declared up front: refused at once, without waiting for a byte of the body.
    host, port = app.url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(b"POST /gradio_api/queue/join HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n")
        assert s.recv(200).startswith(b"HTTP/1.1 413")
    assert _rss_mib(app) - before < 50
    assert httpx.get(f"{app.url}/config", timeout=30).status_code == 200  # still serving


def test_the_upload_limit_is_per_request_not_per_file(app, tmp_path):
    view = studio(app)  # anonymous, on the public Studio
    one = os.urandom(3 * 1024 * 1024)  # under the 4 MB per-file limit
    two = [("files", (f"f{i}.bin", one, "application/octet-stream")) for i in range(2)]
    assert view.post("/gradio_api/upload", files=two).status_code == 200
    three = [("files", (f"f{i}.bin", one, "application/octet-stream")) for i in range(3)]
    r = view.post("/gradio_api/upload", files=three)  # 9 MB > 4 MB x 2 files (+1 MB)
    assert r.status_code == 413 and "too large" in r.json()["detail"]


# ------------------------------------------------------------------ 3. costly requests

def join_predict(client: httpx.Client, image: Path) -> httpx.Response:
    """Upload ``image`` and join the model queue for ``/predict`` with it (raw HTTP)."""
    r = client.post("/gradio_api/upload", files=[("files", (image.name, image.read_bytes(),
                                                            "image/png"))])
    assert r.status_code == 200, r.text
    data = [{"path": r.json()[0], "meta": {"_type": "gradio.FileData"}},
            "depth-anything-v2-small", None, None, None, None]
    return client.post("/gradio_api/queue/join", json={
        "data": data, "fn_index": fn_index(client, "predict"), "session_hash": "pixels",
        "event_data": None, "trigger_id": None})


@pytest.fixture(autouse=True)
def _server_log(app):
    yield
    print(app.log()[-6000:])  # captured: pytest shows it only when the test failed


def test_a_too_large_image_is_refused_when_it_joins_the_queue(app, tmp_path):
    before = set(app.outputs.glob("req-*")) if app.outputs.exists() else set()
    big = photo(tmp_path, (2000, 1200))  # 2.4 MP > 2 MP
    r = join_predict(studio(app), big)
    assert r.status_code == 400 and "too large for this server" in r.json()["detail"]
    client = Client(app.url, verbose=False, download_files=str(tmp_path / "dl"),
                    analytics_enabled=False)
    with pytest.raises(Exception, match="400"):  # gradio_client shows the status only
        client.predict(image=handle_file(str(big)), api_name="/predict")
    after = set(app.outputs.glob("req-*")) if app.outputs.exists() else set()
    assert after == before  # refused before any work: no output folder was made
    small = photo(tmp_path, (160, 120))
    assert Path(client.predict(image=handle_file(str(small)), api_name="/predict")[0]).exists()


def test_one_address_cannot_keep_more_than_the_limit_waiting(app, tmp_path):
    """Joins take milliseconds, a prediction of this photo seconds: of four anonymous joins
    sent back to back from one address, one runs, one (the limit) waits, and the others are
    refused at once; another address is not affected."""
    one = studio(app, "192.0.2.10")
    image = photo(tmp_path, (1600, 1200), seed=3)
    answers = [join_predict(one, image) for _ in range(4)]
    codes = [r.status_code for r in answers]
    assert codes[:2] == [200, 200] and 400 in codes[2:], [r.text for r in answers]
    refused = next(r for r in answers if r.status_code == 400)
    assert "request(s) waiting for the model" in refused.json()["detail"]
    other = studio(app, "192.0.2.11")
    assert join_predict(other, photo(tmp_path, (64, 48))).status_code == 200


# ------------------------------------------------------------------ 4. sessions

def _routes_work(client: httpx.Client, file_path: str) -> dict[str, int]:
    """Status of a page, the config, the API info, a file route, an upload and a join."""
    index = fn_index_or_none(client)
    return {
        "page": client.get("/").status_code,
        "config": client.get("/config").status_code,
        "info": client.get("/gradio_api/info").status_code,
        "file": client.get(f"/gradio_api/file={file_path}").status_code,
        "upload": client.post("/gradio_api/upload",
                              files=[("files", ("a.txt", b"hi", "text/plain"))]).status_code,
        "join": client.post("/gradio_api/queue/join", json={
            "data": [], "fn_index": index or 0, "session_hash": "s", "event_data": None,
            "trigger_id": None}).status_code,
    }


def fn_index_or_none(client: httpx.Client) -> int | None:
    r = client.get("/config")
    return None if r.status_code != 200 else fn_index(client, "admin_users")


def _uploaded(client: httpx.Client) -> str:
    r = client.post("/gradio_api/upload", files=[("files", ("mine.txt", b"private", "text/plain"))])
    assert r.status_code == 200, r.text
    return r.json()[0]


def _refused_everywhere(status: dict[str, int]) -> bool:
    page_is_login = status["page"] == 200  # Gradio answers / with its login page
    return page_is_login and all(code in (401, 403) for k, code in status.items() if k != "page")


def test_a_disabled_users_cookie_stops_working_on_every_route(app):
    temp = login(app, "temp")
    path = _uploaded(temp)
    assert temp.get(f"/gradio_api/file={path}").status_code == 200
    assert temp.get("/config").status_code == 200
    done = cli(app, "users", "disable", "temp")
    assert done.returncode == 0, done.stderr
    status = _routes_work(temp, path)
    assert _refused_everywhere(status), status
    assert temp.get("/gradio_api/login_check").status_code == 401  # the page shows the login
    assert cli(app, "users", "enable", "temp").returncode == 0
    assert temp.get("/config").status_code == 401  # enabling again does not revive it
    assert login(app, "temp").get("/config").status_code == 200


def test_a_password_change_ends_old_logins_cli_and_admin_tab(app, tmp_path):
    rev = login(app, "rev", address="198.51.100.20")
    path = _uploaded(rev)
    done = cli(app, "users", "passwd", "rev", "--password-stdin", stdin="a new password 1\n")
    assert done.returncode == 0, done.stderr
    assert _refused_everywhere(_routes_work(rev, path))
    assert login(app, "rev", "a new password 1", address="198.51.100.20").get(
        "/config").status_code == 200
    # The same from the web Admin tab, as the admin.
    view = login(app, "view")
    assert view.get("/config").status_code == 200
    boss = Client(review_url(app), auth=("boss", PASSWORD), verbose=False,
                  download_files=str(tmp_path), analytics_enabled=False)
    boss.predict("view", "another password 2", api_name="/admin_set_password")
    assert view.get("/config").status_code == 401
    assert login(app, "view", "another password 2").get("/config").status_code == 200


# ------------------------------------------------------------------ 8. login throttling

def test_a_third_party_cannot_lock_a_user_out_of_their_own_address(app):
    attacker, owner = "203.0.113.66", "198.51.100.7"
    for _ in range(12):
        assert try_login(app, "boss", "wrong guess", attacker) == 400
    # The pair (boss, attacker) is locked: even the right password fails from there ...
    assert try_login(app, "boss", PASSWORD, attacker) == 400
    # ... but the real admin logs in from their own address.
    assert try_login(app, "boss", PASSWORD, owner) == 200


def test_one_password_across_many_names_locks_the_address(app):
    sprayer = "203.0.113.99"
    for i in range(25):
        try_login(app, f"user{i}", "Summer2026!", sprayer)
    assert try_login(app, "rev2-missing", "x", sprayer) == 400
    assert try_login(app, "boss", PASSWORD, sprayer) == 400  # the address is locked
    assert try_login(app, "boss", PASSWORD, "198.51.100.8") == 200


# ------------------------------------------------------------------ 7. disk budget

def _disk_bytes(app: Hardened) -> int:
    total = 0
    for root in (app.outputs, app.gradio_temp):
        for p in root.rglob("*") if root.exists() else []:
            if p.is_file():
                total += p.stat().st_size
    return total


def test_the_disk_budget_holds_under_a_burst(app, tmp_path):
    import time

    client = Client(app.url, verbose=False, download_files=str(tmp_path / "dl"),
                    analytics_enabled=False)  # anonymous: the public Studio
    from depthweb.services.workspace import IN_USE_S

    budget = BUDGET_MB * 1024 * 1024
    sizes, started, ended = [], [], []
    for seed in range(8):
        image = photo(tmp_path, (1280, 960), seed=10 + seed)
        started.append(time.monotonic())
        client.predict(image=handle_file(str(image)), api_name="/predict")
        # at least IN_USE_S / 2 per request, so that at most two earlier results are "in use"
        # and the bound below can fail on a fast machine too
        time.sleep(max(0.0, started[-1] + IN_USE_S / 2 - time.monotonic()))
        ended.append(time.monotonic())
        sizes.append(_disk_bytes(app))
    assert max(sizes) > budget / 2  # the burst really writes a lot ...
    step = max(b - a for a, b in zip([0, *sizes], sizes, strict=False))
    for i, size in enumerate(sizes):
        # ... yet stays near the budget while it runs: request i's clean-up may spare only the
        # results of the requests that ended less than IN_USE_S before it started (a client may
        # be downloading them), plus its own and the one before (uploads, timing slack).
        recent = sum(1 for j in range(i) if started[i] - ended[j] < IN_USE_S)
        assert recent <= 2 and size <= budget + (2 + recent) * step, (i, sizes, recent)
    deadline = time.monotonic() + 60
    while _disk_bytes(app) > budget and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _disk_bytes(app) <= budget  # and under it after the scheduled sweep


# ------------------------------------------------------------------ 1 again, in Chromium

EVIL_PAGE = """<!doctype html><html><body><script>
const body = JSON.stringify({data: ["%(name)s", "csrf password 1", "admin"], fn_index: %(fn)d,
                             session_hash: "csrf-browser", event_data: null, trigger_id: null});
async function attack() {
  const out = [];
  try {  // a simple request: no preflight, the cookie goes along (same site, other port)
    await fetch("%(target)s/gradio_api/queue/join", {method: "POST", mode: "no-cors",
      credentials: "include", headers: {"Content-Type": "text/plain"}, body});
    out.push("sent");
  } catch (e) { out.push("no-cors failed"); }
  try {  // a JSON request: preflight first
    const r = await fetch("%(target)s/gradio_api/queue/join", {method: "POST",
      credentials: "include", headers: {"Content-Type": "application/json"}, body});
    out.push("read " + r.status);
  } catch (e) { out.push("cors blocked"); }
  document.title = out.join(", ");
}
attack();
</script></body></html>"""


def test_a_page_on_another_origin_cannot_act_as_the_logged_in_admin_in_chromium(
        app, browser, tmp_path):
    import http.server
    import threading

    from tests.app.studio_server import free_port

    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.goto(f"{review_url(app)}/")
    page.locator("input[type=text]").fill("boss")
    page.locator("input[type=password]").fill(PASSWORD)
    page.get_by_role("button", name="Login").click()
    page.wait_for_selector("#dw-header")
    index = fn_index(login(app, "boss"), "admin_add_user")
    (tmp_path / "evil.html").write_text(EVIL_PAGE % {
        "name": "csrfadmin", "fn": index, "target": review_url(app)})
    port = free_port()
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(  # noqa: E731
        *a, directory=str(tmp_path))
    evil = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        page.goto(f"http://127.0.0.1:{port}/evil.html")  # another origin (other port)
        page.wait_for_function("document.title.length > 0")
        assert page.title() == "sent, cors blocked"
    finally:
        evil.shutdown()
    assert "csrfadmin" not in user_names(app)
    # The same request from the app's own page works: the cookie and the request were fine.
    page.goto(f"{review_url(app)}/")
    status = page.evaluate("""async ([url, body]) => (await fetch(url, {method: "POST",
        headers: {"Content-Type": "application/json"}, body})).status""",
        [f"{review_url(app)}/gradio_api/queue/join", '{"data": ["", "", "viewer"], '
         f'"fn_index": {index}, "session_hash": "own", "event_data": null, "trigger_id": null}}'])
    assert status == 200
    context.close()
