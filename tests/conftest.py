"""Test-wide setup: offline, no analytics, an isolated data directory, the shared real data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def require_shared_data() -> Path:
    """The read-only real data beside the repo; missing data fails in CI and skips locally."""
    if SHARED_DATA.is_dir():
        return SHARED_DATA
    if os.environ.get("CI"):
        pytest.fail(f"real test data missing at {SHARED_DATA}")
    pytest.skip(f"real test data missing at {SHARED_DATA}")


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless=new", "--disable-gpu",
                 "--disable-background-networking", "--disable-dev-shm-usage"]


@pytest.fixture(scope="session")
def browser():
    """One Debian Chromium for the whole session (Playwright's sync API allows one per thread)."""
    import shutil

    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        if os.environ.get("CI"):
            pytest.fail(f"Debian chromium is missing at {CHROMIUM}")
        pytest.skip(f"Debian chromium is missing at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def shared_data() -> Path:
    return require_shared_data()


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path_factory, monkeypatch):
    """Every test gets its own data dir and HF cache, and fresh settings / model cache."""
    from depthweb.config import get_settings
    from depthweb.models.registry import clear_cache

    root = tmp_path_factory.mktemp("depthweb-home")
    monkeypatch.setenv("DEPTHWEB_DATA_DIR", str(root / "data"))
    monkeypatch.setenv("DEPTHWEB_OUTPUT_DIR", str(root / "outputs"))
    monkeypatch.setenv("HF_HUB_CACHE", str(root / "hf-cache"))
    monkeypatch.delenv("DEPTHWEB_MODEL_DIR", raising=False)
    get_settings.cache_clear()
    clear_cache()
    yield
    get_settings.cache_clear()
    clear_cache()
