"""Passwords, database passwords and Hub tokens never appear in logs, error messages or the
database: login and ``admin_add_user`` passwords (server log, SQLite file and WAL, replies,
error messages), a PostgreSQL URL with a password when the connection fails (CLI, with and
without ``-v``, and app start), and ``HF_TOKEN`` when a push to the Hub fails, even against a
Hub that echoes the Authorization header back (it is masked as ``***``)."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from tests.review_ui.server import PASSWORD

REPO = Path(__file__).resolve().parents[2]
PG_SECRET = "S3cret-PG-pass"
TOKEN = "hf_Zx9TestTokenNeverPrintMe0123456789"


def test_passwords_stay_out_of_logs_replies_and_the_database(sec_server, login, ctx):
    from gradio_client.exceptions import AppError

    from depthweb.store.models import User

    wrong, new, bad_name = "Wr0ng-guess-4711", "N3w-user-pass-99", "Bad-name-pw-123"
    short = "Sh0rt7"
    with httpx.Client(base_url=sec_server.url, timeout=30) as c:
        r = c.post("/login", data={"username": "rev", "password": wrong})
        assert r.status_code != 200 and wrong not in r.text
    boss = login("boss")
    table, cleared = boss.predict("newbie", new, "reviewer", api_name="/admin_add_user")
    assert cleared == "" and new not in json.dumps(table)  # the password box is emptied
    messages = []
    for name, pw in (("bad name!", bad_name), ("shorty", short)):
        with pytest.raises(AppError) as err:
            boss.predict(name, pw, "reviewer", api_name="/admin_add_user")
        messages.append(str(err.value))
    assert "at least 8 characters" in messages[1]
    with httpx.Client(base_url=sec_server.url, timeout=30) as c:  # the hash really is it
        assert c.post("/login", data={"username": "newbie", "password": new}).status_code == 200
    db = sec_server.data_dir / "depthweb.sqlite"
    stored = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*") if p.is_file())
    for secret in (PASSWORD, wrong, new, bad_name, short):
        assert secret not in sec_server.log() and secret.encode() not in stored, secret
        assert not any(secret in m for m in messages), secret
    with ctx.session(readonly=True) as s:
        hashes = s.scalars(select(User.password_hash)).all()
    assert hashes and all(h.startswith("$argon2id$") for h in hashes)


def _cli_env(tmp: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DEPTHWEB_", "HF_", "HUGGING_FACE"))}
    env.update({"PYTHONPATH": str(REPO), "GRADIO_ANALYTICS_ENABLED": "False",
                "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp / "hf-home"),
                "DEPTHWEB_DATA_DIR": str(tmp / "data"), "DEPTHWEB_OUTPUT_DIR": str(tmp / "out")})
    env.update(extra)
    return {k: v for k, v in env.items() if v != ""}


def _run_all(commands: list[tuple[list[str], dict]]) -> list[subprocess.CompletedProcess]:
    """Run ``python -m depthweb ARGS`` for each (args, env), two at a time."""
    def one(item):
        args, env = item
        return subprocess.run([sys.executable, "-m", "depthweb", *args], env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=120, check=False)

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(one, commands))


def _closed_port() -> int:
    from tests.app.studio_server import free_port

    return free_port()  # nothing listens there once the probe socket is closed


@pytest.mark.slow
def test_the_cli_never_prints_a_database_password(tmp_path):
    good = f"postgresql://dbuser:{PG_SECRET}@127.0.0.1:{_closed_port()}/depthweb"
    broken = f"postgresql://dbuser:{PG_SECRET}@127.0.0.1:notaport/depthweb"
    runs = [(["db", "upgrade"], good), (["-v", "db", "upgrade"], good),
            (["-v", "users", "list"], good), (["export", "--dataset", "x", "-o", "o"], good),
            (["-v", "db", "upgrade"], broken)]
    done = _run_all([(args, _cli_env(tmp_path, DEPTHWEB_DATABASE_URL=url))
                     for args, url in runs])
    for (args, url), proc in zip(runs, done, strict=True):
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0 and PG_SECRET not in out, (args, url, out[-2000:])
    assert "dbuser:***@" in done[2].stderr  # the URL is named, with its password masked


@pytest.mark.parametrize("url,shown", [
    (f"postgresql://dbuser:{PG_SECRET}@127.0.0.1:1/depthweb", "dbuser:***@127.0.0.1:1"),
    (f"postgresql://dbuser:{PG_SECRET}@db:notaport/depthweb", "not a usable database URL"),
    (f"nosuchdb://dbuser:{PG_SECRET}@db/depthweb", "not a usable database URL"),
    (f"not a url {PG_SECRET}", "not a usable database URL"),
])
def test_the_app_never_shows_a_database_password(tmp_path, caplog, url, shown):
    import logging

    from depthweb.config import Settings
    from depthweb.errors import DepthwebError
    from depthweb.ui.app import build_review
    from depthweb.ui.auth import clear_review_cache

    caplog.set_level(logging.DEBUG)
    clear_review_cache()
    base = dict(data_dir=tmp_path / "data", output_dir=tmp_path / "out", database_url=url)
    try:
        with pytest.raises(DepthwebError) as err:
            build_review(Settings(**base, review="on"))  # refuses to start, in one sentence
        assert shown in str(err.value) and PG_SECRET not in str(err.value)
        assert PG_SECRET not in repr(err.value.__cause__) + repr(err.value.__context__)
        assert build_review(Settings(**base, review="auto")) is None  # Studio only
        assert "review tabs off" in caplog.text and PG_SECRET not in caplog.text
    finally:
        clear_review_cache()


class _EchoHub(http.server.BaseHTTPRequestHandler):
    """A Hub that refuses everything and echoes the Authorization header it got."""

    def _refuse(self) -> None:
        size = int(self.headers.get("content-length") or 0)
        if size:
            self.rfile.read(size)
        echo = f"bad credentials: {self.headers.get('authorization')}"
        body = json.dumps({"error": echo}).encode()
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.send_header("x-error-message", echo)
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_HEAD = _refuse

    def log_message(self, *args) -> None:
        return None


@pytest.mark.slow
def test_a_failed_push_to_the_hub_never_prints_the_token(sec_server, tmp_path):
    hub = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EchoHub)
    threading.Thread(target=hub.serve_forever, daemon=True).start()
    try:
        endpoints = [f"http://127.0.0.1:{hub.server_address[1]}",
                     f"http://127.0.0.1:{_closed_port()}"]
        commands = []
        for i, endpoint in enumerate(endpoints):
            for verbose in ([], ["-v"]):
                args = [*verbose, "export", "--dataset", "nyu", "-o",
                        str(tmp_path / f"out{i}{len(verbose)}"), "--push-to-hub", "me/rooms"]
                env = _cli_env(tmp_path, HF_TOKEN=TOKEN, HF_ENDPOINT=endpoint, HF_HUB_OFFLINE="",
                               DEPTHWEB_DATA_DIR=str(sec_server.data_dir))
                commands.append((args, env))
        done = _run_all(commands)
    finally:
        hub.shutdown()
    for (args, _env), proc in zip(commands, done, strict=True):
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0 and TOKEN not in out, (args, out[-3000:])
    echoed = done[0].stderr + done[1].stderr
    assert "bad credentials: Bearer ***" in echoed  # the Hub's answer is shown, masked
