"""The review commands end to end through ``python -m depthweb``, with the database URL and the
data directory from the environment; problems are one line on stderr and a non-zero exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from depthweb.services.review import ReviewContext
from depthweb.store import authenticate
from depthweb.store.auth import LoginThrottle
from tests.review.conftest import TEACHER, review_settings, write_images


def run_cli(*args, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "HF_HUB_OFFLINE": "1", **env}
    return subprocess.run([sys.executable, "-m", "depthweb", *map(str, args)], input=stdin,
                          capture_output=True, text=True, timeout=600, env=full)


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.slow
def test_import_pseudo_label_export_from_the_command_line(db_url, tmp_path, tiny_teacher):
    env = {"DEPTHWEB_DATA_DIR": str(tmp_path / "data"), "DEPTHWEB_DATABASE_URL": db_url}
    up = run_cli("db", "upgrade", env=env)
    assert up.returncode == 0 and "schema at revision" in up.stdout, up.stderr

    add = run_cli("users", "add", "alice", "--role", "reviewer", "--password-stdin",
                  env=env, stdin="correct horse battery\n")
    assert add.returncode == 0, add.stderr
    one_line_error(run_cli("users", "add", "alice", "--role", "viewer", "--password-stdin",
                           env=env, stdin="another password\n"), "already exists")
    one_line_error(run_cli("users", "add", "bob", "--role", "admin", "--password-stdin",
                           env=env, stdin="short\n"), "at least 8")

    photos = tmp_path / "photos"
    write_images(photos, range(3), scene=True)
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    imp = run_cli("import", photos, "--dataset", "yard", env=env)
    assert imp.returncode == 1 and "broken.jpg" in imp.stderr and "Traceback" not in imp.stderr
    assert "3 added" in imp.stdout

    pl = run_cli("pseudo-label", "--dataset", "yard", "-m", TEACHER, "--weights", tiny_teacher,
                 "--batch-size", "2", "--device", "cpu", env=env)
    assert pl.returncode == 0 and "3 labelled" in pl.stdout, pl.stderr

    out = tmp_path / "export"
    ex = run_cli("export", "--dataset", "yard", "-o", out, "--filter", "best", env=env)
    assert ex.returncode == 0 and "3 samples" in ex.stdout, ex.stderr
    assert json.loads((out / "export.json").read_text())["count"] == 3
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 3
    one_line_error(run_cli("export", "--dataset", "yard", "-o", out, env=env),
                   "already holds files")
    one_line_error(run_cli("export", "--dataset", "nope", "-o", tmp_path / "x", env=env),
                   "no dataset named 'nope'")
    one_line_error(run_cli("pseudo-label", "--dataset", "yard", "-m", TEACHER, "--weights",
                           tmp_path / "missing", env=env), "not found")

    settings = review_settings(tmp_path, db_url)
    with ReviewContext.from_settings(settings) as ctx, ctx.session() as s:
        user = authenticate(session=s, name="alice", password="correct horse battery",
                            throttle=LoginThrottle())
        assert user is not None and user.role == "reviewer"


def test_commands_need_a_migrated_reachable_database(tmp_path):
    env = {"DEPTHWEB_DATA_DIR": str(tmp_path / "data")}
    env.pop("DEPTHWEB_DATABASE_URL", None)
    one_line_error(run_cli("import", tmp_path, "--dataset", "d",
                           env={**env, "DEPTHWEB_DATABASE_URL": ""}), "depthweb db upgrade")
    up = run_cli("db", "upgrade", env={**env, "DEPTHWEB_DATABASE_URL": ""})
    assert up.returncode == 0 and str(tmp_path / "data" / "depthweb.sqlite") in up.stdout
    stray = tmp_path / "data" / "blobs" / "ab" / "cd" / ("ab" * 32 + ".npy")
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"left by a killed job")
    kept = run_cli("db", "gc", env={**env, "DEPTHWEB_DATABASE_URL": ""})
    assert kept.returncode == 0 and "removed 0" in kept.stdout and stray.exists()
    gc = run_cli("db", "gc", "--min-age-s", "0", env={**env, "DEPTHWEB_DATABASE_URL": ""})
    assert gc.returncode == 0 and "removed 1" in gc.stdout and not stray.exists()
    bad = {**env, "DEPTHWEB_DATABASE_URL": "postgresql://nobody:secret@127.0.0.1:1/none"}
    proc = run_cli("users", "list", env=bad)
    one_line_error(proc, "Cannot open the database")
    assert "secret" not in proc.stderr
