"""``DEPTHWEB_QUEUE_MAX_SIZE`` bounds the app's queue (0 = no bound), read from the environment
like every setting."""

from __future__ import annotations

import pytest

from depthweb.config import Settings, get_settings
from depthweb.ui.app import build_studio


@pytest.mark.parametrize(("env", "expected"), [(None, 100), ("7", 7), ("0", None)])
def test_the_queue_holds_at_most_the_configured_number_of_requests(monkeypatch, env, expected):
    monkeypatch.setenv("DEPTHWEB_REVIEW", "off")
    if env is None:
        monkeypatch.delenv("DEPTHWEB_QUEUE_MAX_SIZE", raising=False)
    else:
        monkeypatch.setenv("DEPTHWEB_QUEUE_MAX_SIZE", env)
    get_settings.cache_clear()
    demo = build_studio()
    assert demo._queue.max_size == expected


def test_a_negative_queue_size_is_refused():
    with pytest.raises(ValueError, match="queue_max_size"):
        Settings(queue_max_size=-1)
