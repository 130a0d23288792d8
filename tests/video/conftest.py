"""The launched Studio, its gradio_client and a Chromium page, shared with tests/app and e2e."""

from tests.app.conftest import client, studio  # noqa: F401  (fixtures)
from tests.e2e.conftest import artifacts, page  # noqa: F401  (fixtures)
