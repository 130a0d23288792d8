"""A launched Studio (subprocess, tiny local models) and a gradio_client connected to it."""

from __future__ import annotations

import pytest

from tests.app.studio_server import StudioServer, shared_studio


@pytest.fixture(scope="session")
def studio(tmp_path_factory, pytestconfig) -> StudioServer:
    return shared_studio(tmp_path_factory, pytestconfig)


@pytest.fixture(scope="session")
def client(studio, tmp_path_factory):
    from gradio_client import Client

    downloads = tmp_path_factory.mktemp("client-downloads")
    return Client(studio.url, verbose=False, download_files=str(downloads),
                  analytics_enabled=False)
