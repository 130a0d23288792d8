"""On a Hugging Face Space (OAuth mode) the app has no login wall: the Studio is public and the
review platform relies on the OAuth session alone. An anonymous visitor calling every review,
admin and train endpoint directly is refused ("not logged in") and nothing changes."""

from __future__ import annotations

import pytest

from tests.security.conftest import state_snapshot
from tests.security.endpoints import PUBLIC, ROLES, arguments, make_case


@pytest.fixture
def space_app(sec_server, monkeypatch, tmp_path):
    """The app over the session's database, built and launched as on a Space with OAuth."""
    import gradio.http_server
    import gradio.oauth

    from depthweb.ui import auth
    from depthweb.ui.app import build_app, launch_kwargs
    from tests.app.studio_server import free_port

    monkeypatch.setenv("SYSTEM", "spaces")
    monkeypatch.setenv("SPACE_ID", "someone/depthweb")
    monkeypatch.setenv("OAUTH_CLIENT_ID", "client-id")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    monkeypatch.setattr(gradio.oauth, "OAUTH_CLIENT_SECRET", "a secret the tests set")
    monkeypatch.setattr(auth, "_has_authlib", lambda: True)
    # Gradio's real Hugging Face routes need authlib and the Space's secrets.
    monkeypatch.setattr(gradio.oauth, "_add_oauth_routes", lambda app: None)
    monkeypatch.setattr(gradio.http_server, "get_space", lambda: None)  # no Spaces reloader
    settings = sec_server.settings().model_copy(update={"output_dir": tmp_path / "out"})
    auth.clear_review_cache()
    demo = build_app(settings)
    kwargs = launch_kwargs(settings)
    assert "auth" not in kwargs and demo.expects_oauth  # no login wall: OAuth only
    demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                quiet=True, **kwargs)
    try:
        yield demo.local_url
    finally:
        demo.close()
        auth.clear_review_cache()


@pytest.mark.slow
def test_anonymous_visitors_of_a_space_change_nothing(space_app, sec_server, ctx, tmp_path):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    visitor = Client(space_app, verbose=False, analytics_enabled=False,
                     download_files=str(tmp_path / "dl"))
    named = visitor.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert set(named) == set(ROLES)
    case = make_case(ctx, tmp_path, str(sec_server.teacher_weights))
    before = state_snapshot(ctx, sec_server.data_dir)
    unclear = {}
    for name in (n for n in named if ROLES[n] != PUBLIC or n == "/review_open"):
        try:
            visitor.predict(*arguments(name, case), api_name=name)
            unclear[name] = "ran"
        except AppError as err:
            if "not logged in" not in str(err):
                unclear[name] = str(err)
    assert not unclear, unclear
    assert state_snapshot(ctx, sec_server.data_dir) == before
