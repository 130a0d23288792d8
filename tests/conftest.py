"""Test-wide setup: offline, no analytics, an isolated data directory, the shared real data.

Real data: tests that need the licensed files in ``../shared/data`` (NYU, KITTI, Middlebury, the
Depth Anything demo photos; their licences keep them out of the repository, see its MANIFEST.md)
carry the ``real_data`` marker, given explicitly or by using a fixture that reads that folder
(``shared_data``, or one decorated with :func:`real_data_fixture`). Where the folder is absent
(a plain clone), exactly those tests are left out and one line of the summary says so.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


REAL_DATA = "real_data"


def real_data_fixture(fixture_function):
    """Mark a fixture as reading ``../shared/data``: every test using it is ``real_data``.
    Put it below ``@pytest.fixture``."""
    fixture_function._depthweb_real_data = True
    return fixture_function


def needs_real_data(item: pytest.Item) -> bool:
    """Whether ``item`` is marked ``real_data`` or uses a fixture that reads the real data."""
    if item.get_closest_marker(REAL_DATA):
        return True
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs if info is not None else {}
    return any(getattr(d.func, "_depthweb_real_data", False)
               for name in item.fixturenames for d in defs.get(name, ()))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without ``../shared/data``, leave out exactly the real-data tests (counted for the
    summary line); everything else runs on generated data or the photos shipped in assets/."""
    real = [item for item in items if needs_real_data(item)]
    for item in real:
        item.add_marker(REAL_DATA)
    config.stash[_REAL_DATA_LEFT_OUT] = 0
    if SHARED_DATA.is_dir() or not real:
        return
    chosen = set(map(id, real))
    items[:] = [item for item in items if id(item) not in chosen]
    config.hook.pytest_deselected(items=real)
    config.stash[_REAL_DATA_LEFT_OUT] = len(real)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    left_out = config.stash.get(_REAL_DATA_LEFT_OUT, 0)
    if left_out:
        terminalreporter.write_line(
            f"SKIPPED {left_out} real-data tests: {SHARED_DATA} is absent (licensed NYU, "
            f"KITTI, Middlebury and demo files; see its MANIFEST.md)", yellow=True)


_REAL_DATA_LEFT_OUT = pytest.StashKey[int]()


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
@real_data_fixture
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
