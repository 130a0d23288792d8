"""The secret masking of :mod:`depthweb.logsafe` and its use in the web handlers' errors."""

from __future__ import annotations

import io
import logging

import pytest

from depthweb.logsafe import RedactFilter, install_redaction, known_secrets, redact

TOKEN = "hf_Qw8UnitTestTokenAbcdefghijklmnop"
CUSTOM = "my-private-token-value"  # not hf_-shaped: masked because HF_TOKEN holds it


@pytest.fixture
def secrets_env(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no saved login token
    monkeypatch.setenv("HF_TOKEN", CUSTOM)
    monkeypatch.setenv("DEPTHWEB_DATABASE_URL", "postgresql://ann:Pg-Pass-42@db:5432/depthweb")


@pytest.mark.parametrize("text,hidden,kept", [
    (f"token {TOKEN} refused", TOKEN, "token hf_*** refused"),
    (f"Authorization: Bearer {CUSTOM}x", CUSTOM, "Bearer ***"),
    ("postgresql+psycopg://ann:Pg-Pass-42@db:5432/depthweb", "Pg-Pass-42", "ann:***@db"),
    ("mysql://bob:other-pw@h/x failed", "other-pw", "bob:***@h"),
    (f"the env token {CUSTOM} leaked", CUSTOM, "the env token *** leaked"),
    ("password Pg-Pass-42 from the configured URL", "Pg-Pass-42", "password *** from"),
])
def test_redact_masks_tokens_and_url_passwords(secrets_env, text, hidden, kept):
    out = redact(text)
    assert hidden not in out and kept in out


def test_redact_leaves_ordinary_text_alone(secrets_env):
    text = "Saved: note on task 3 (now version 4); see https://huggingface.co/datasets/me/x"
    assert redact(text) == text
    assert set(known_secrets()) == {CUSTOM, "Pg-Pass-42"}


def test_the_filter_masks_messages_arguments_and_tracebacks(secrets_env):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactFilter())
    log = logging.getLogger("depthweb.test.redaction.child")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("push failed with %s for %s", TOKEN, "postgresql://ann:Pg-Pass-42@db/x")
        try:
            raise RuntimeError(f"hub said: bad header Bearer {CUSTOM}")
        except RuntimeError:
            log.exception("upload failed")
    finally:
        log.removeHandler(handler)
    out = stream.getvalue()
    assert TOKEN not in out and CUSTOM not in out and "Pg-Pass-42" not in out
    assert "hf_***" in out and "ann:***@db" in out and "Bearer ***" in out
    assert "RuntimeError" in out  # the traceback is still there


def test_install_redaction_covers_root_handlers_once(secrets_env):
    root = logging.getLogger()
    handler = logging.StreamHandler(io.StringIO())
    root.addHandler(handler)
    try:
        install_redaction()
        install_redaction()
        assert sum(isinstance(f, RedactFilter) for f in handler.filters) == 1
        assert any(isinstance(f, RedactFilter) for f in logging.lastResort.filters)
    finally:
        root.removeHandler(handler)


def test_web_errors_mask_secrets_and_escape_html(secrets_env):
    import gradio as gr

    from depthweb.errors import DepthwebError
    from depthweb.ui.common import user_errors

    with pytest.raises(gr.Error) as err, user_errors("push"):
        raise DepthwebError(f"Pushing failed (Bearer {CUSTOM}) for <b>me/x</b>.")
    assert CUSTOM not in err.value.message and "&lt;b&gt;me/x&lt;/b&gt;" in err.value.message
