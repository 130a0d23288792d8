"""Real headless Chromium (Debian's, driven by Python Playwright) against a launched Studio.

Screenshots go to ``test-artifacts/e2e/`` (gitignored) for people to look at.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app.studio_server import StudioServer, shared_studio

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "e2e"


@pytest.fixture(scope="session")
def studio(tmp_path_factory, pytestconfig) -> StudioServer:
    return shared_studio(tmp_path_factory, pytestconfig)


@pytest.fixture
def page(browser, studio):
    context = browser.new_context(viewport={"width": 1400, "height": 1000},
                                  accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(studio.url)
    page.wait_for_selector("#predict-run", state="visible")
    yield page
    context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
