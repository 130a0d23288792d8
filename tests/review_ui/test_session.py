"""The review use cases and the login wiring without a server: roles checked from the stored
user, stale saves refused with nothing written, painted layers to label regions, display <->
label pixels, when the review feature turns on, the ``auth=`` callable (throttled, passwords
never logged), the Hugging Face account mapping, and Markdown escaping."""

from __future__ import annotations

import asyncio
import inspect
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from argon2 import PasswordHasher
from sqlalchemy.engine import make_url

from depthweb.config import Settings
from depthweb.errors import DepthwebError, InputError
from depthweb.services.review import ReviewContext
from depthweb.services.review import session as svc
from depthweb.store import (
    SYSTEM,
    LoginThrottle,
    PermissionDeniedError,
    StaleRevisionError,
    create_user,
    get_user,
    upgrade,
)
from depthweb.ui import auth
from depthweb.ui.review_tab import md_escape
from tests.review.conftest import make_tasks, scene_disparity
from tests.review_ui.conftest import db_snapshot

PASSWORD = "correct horse battery"
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def settings_for(root: Path, review: str = "auto") -> Settings:
    return Settings(data_dir=root / "data", output_dir=root / "out", device="cpu", review=review)


@pytest.fixture
def ctx(tmp_path):
    settings = settings_for(tmp_path)
    upgrade(settings.resolved_database_url)
    with ReviewContext.from_settings(settings) as context:
        with context.session() as s:
            for name, role in {"rev": "reviewer", "view": "viewer", "boss": "admin"}.items():
                create_user(session=s, actor=SYSTEM, name=name, password=PASSWORD, role=role,
                            hasher=FAST)
        yield context
    auth.clear_review_cache()


@pytest.fixture
def task(ctx) -> int:
    return make_tasks(ctx, [scene_disparity(3, 48, 64)])[0]


def test_next_page_shows_the_photo_label_and_3d_view(ctx, task):
    page = svc.next_page(ctx, "rev", gold_every=0)
    # claiming does not change the version: the page stays current
    assert page is not None and (page.task_id, page.version, page.status) == (task, 0,
                                                                              "in_review")
    assert page.label_shape == (48, 64) and page.photo.shape == (48, 64, 3)
    assert page.teacher_picture.shape == page.label_picture.shape == (48, 64, 3)
    assert page.assignee == "rev" and page.source == "pseudo"
    assert svc.figure_3d(ctx, "rev", task) is not None  # built only when asked for
    assert svc.next_page(ctx, "boss", gold_every=0) is None  # claimed by rev: nothing else


@pytest.mark.parametrize("who", ["view", None, "nobody"])
def test_only_reviewers_and_admins_write(ctx, task, who):
    before = db_snapshot(ctx)
    region = np.zeros((48, 64), bool)
    region[:8] = True
    saves = [
        lambda: svc.approve(ctx, who, task, 0),
        lambda: svc.reject(ctx, who, task, 0, ["sky"]),
        lambda: svc.save_note(ctx, who, task, 0, "hello"),
        lambda: svc.save_region(ctx, who, task, 0, region, "mask"),
        lambda: svc.save_region(ctx, who, task, 0, region, "far"),
        lambda: svc.save_anchors(ctx, who, task, 0, [[10, 10, 2.0]]),
        lambda: svc.save_pairs(ctx, who, task, 0, [[10, 40, 10, 5]]),
        lambda: svc.next_page(ctx, who),
    ]
    for save in saves:
        with pytest.raises(PermissionDeniedError):
            save()
    assert db_snapshot(ctx) == before  # not even a region blob was written
    if who == "view":
        assert svc.open_page(ctx, who, task).task_id == task  # viewers may look
    else:
        with pytest.raises(PermissionDeniedError):
            svc.open_page(ctx, who, task)


def test_a_stale_save_writes_nothing(ctx, task):
    assert svc.save_note(ctx, "boss", task, 0, "first") == 1
    before = db_snapshot(ctx)
    region = np.ones((48, 64), bool)
    for stale in (lambda: svc.approve(ctx, "rev", task, 0),
                  lambda: svc.save_region(ctx, "rev", task, 0, region, "mask"),
                  lambda: svc.save_anchors(ctx, "rev", task, 0, [[5, 5, 1.5]])):
        with pytest.raises(StaleRevisionError):
            stale()
    assert db_snapshot(ctx) == before
    assert svc.save_anchors(ctx, "rev", task, 1, [[5, 40, 1.5], [60, 5, 4.0]]) == 2
    page = svc.open_page(ctx, "rev", task)
    assert page.kind == "metric_depth" and page.source == "corrected"
    assert [h.action for h in page.history] == ["note", "anchors"]


def test_region_actions_resize_the_painting_to_the_label(ctx, task):
    layer = np.zeros((96, 128, 4), np.uint8)  # painted at twice the label size
    layer[:24, :, 3] = 255
    region = svc.region_from_layers([layer])
    assert region.shape == (96, 128) and region[:24].all() and not region[24:].any()
    version = svc.save_region(ctx, "rev", task, 0, region, "far")
    page = svc.open_page(ctx, "rev", task)
    assert version == 1 and page.history[-1].action == "far_fill"
    with pytest.raises(InputError, match="Nothing is painted"):
        svc.save_region(ctx, "rev", task, 1, np.zeros((48, 64), bool), "mask")
    with pytest.raises(InputError, match="Unknown region action"):
        svc.save_region(ctx, "rev", task, 1, region, "sky")


def test_painted_layers_and_pixel_mapping():
    rgb = np.zeros((10, 20, 3), np.uint8)
    rgb[2, 3] = (0, 0, 9)
    gray = np.zeros((10, 20), np.uint8)
    gray[5, 5] = 1
    assert svc.region_from_layers([]) is None
    assert svc.region_from_layers([np.zeros((10, 20, 4), np.uint8)]) is None
    both = svc.region_from_layers([rgb, gray])
    assert both.sum() == 2 and both[2, 3] and both[5, 5]
    small = svc.fit_region(np.eye(4, dtype=bool), (8, 8))
    assert small.shape == (8, 8) and small[0, 0] and small[7, 7] and not small[0, 7]
    for u, v in [(0, 0), (639, 479), (321, 17)]:
        d = svc.to_display(u, v, (480, 640), (240, 320))
        assert svc.to_label(*d, (480, 640), (240, 320)) in {(u, v), (u - 1, v), (u, v - 1),
                                                            (u - 1, v - 1)}
    assert svc.to_label(-5, 999, (48, 64), (48, 64)) == (0, 47)  # clamped


def test_anchor_rows_are_checked(ctx, task):
    with pytest.raises(InputError, match="at least one scale anchor"):
        svc.save_anchors(ctx, "rev", task, 0, [[None, None, None]])
    with pytest.raises(InputError, match="not all numbers"):
        svc.save_anchors(ctx, "rev", task, 0, [["a", 1, 2]])
    with pytest.raises(InputError, match="positive"):
        svc.save_anchors(ctx, "rev", task, 0, [[1, 1, -2]])


def test_review_turns_on_only_with_a_database_that_has_users(tmp_path):
    auth.clear_review_cache()
    off = settings_for(tmp_path / "a")
    assert auth.review_setup(off) is None and auth.review_launch_kwargs(off) == {}
    assert not (tmp_path / "a" / "data" / "depthweb.sqlite").exists()  # never created
    with pytest.raises(DepthwebError, match="db upgrade"):
        auth.review_setup(settings_for(tmp_path / "a", review="on"))

    empty = settings_for(tmp_path / "b")
    upgrade(empty.resolved_database_url)
    assert auth.review_setup(empty) is None  # no users yet
    auth.clear_review_cache()
    with ReviewContext.from_settings(empty) as c, c.session() as s:
        create_user(session=s, actor=SYSTEM, name="boss", password=PASSWORD, role="admin",
                    hasher=FAST)
    app = auth.review_setup(empty)
    assert app is not None and not app.oauth
    kwargs = auth.review_launch_kwargs(empty)
    assert set(kwargs) == {"auth", "auth_message"} and callable(kwargs["auth"])
    assert auth.review_setup(settings_for(tmp_path / "b", review="off")) is None
    with pytest.raises(DepthwebError, match="auto, on, off"):
        auth.review_setup(settings_for(tmp_path / "b", review="maybe"))
    auth.clear_review_cache()


def test_auth_callable_checks_passwords_throttles_and_logs_no_password(ctx, caplog):
    throttle = LoginThrottle(free_attempts=2, base_delay_s=60.0)
    auth_fn = auth.make_auth(ctx, throttle)
    assert inspect.iscoroutinefunction(auth_fn)  # Gradio awaits it: the hash runs off-loop

    def check(name: str, password: str) -> bool:
        # A thread of its own: Playwright's sync API may hold this thread's event loop.
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, auth_fn(name, password)).result()

    caplog.set_level(logging.DEBUG)
    assert check("rev", PASSWORD) is True
    assert check("rev", "wrong password 1") is False
    assert check("ghost", PASSWORD) is False
    for _ in range(2):
        check("rev", "wrong password 2")
    assert check("rev", PASSWORD) is False  # throttled: not even checked
    assert check("view", PASSWORD) is True  # other names are unaffected
    assert "wrong password" not in caplog.text and PASSWORD not in caplog.text


def test_hugging_face_logins_map_to_viewers_only_when_oauth_is_on(ctx, monkeypatch):
    import gradio as gr

    profile = gr.OAuthProfile({"name": "Alice", "preferred_username": "alice",
                               "profile": "", "picture": ""})
    assert auth.ReviewApp(ctx, oauth=False).username(None, profile) is None
    assert auth.ReviewApp(ctx, oauth=True).username(None, profile) == "alice@hf"
    with ctx.session(readonly=True) as s:
        user = get_user(s, "alice@hf")
        assert user is not None and user.role == "viewer"
    assert auth.ReviewApp(ctx, oauth=True).username(None, profile) == "alice@hf"  # once

    for var in ("SYSTEM", "SPACE_ID", "OAUTH_CLIENT_ID"):
        monkeypatch.delenv(var, raising=False)
    assert not auth.oauth_available()

    monkeypatch.setenv("SYSTEM", "spaces")
    monkeypatch.setenv("SPACE_ID", "someone/depthweb")
    assert not auth.oauth_available()
    monkeypatch.setenv("OAUTH_CLIENT_ID", "abc")
    monkeypatch.setattr(auth, "_has_authlib", lambda: False)
    assert not auth.oauth_available()  # no authlib: password login instead
    monkeypatch.setattr(auth, "_has_authlib", lambda: True)
    assert auth.oauth_available()


def test_listed_admins_and_the_default_role_apply_to_hugging_face_logins(ctx):
    import gradio as gr

    def profile(name: str) -> gr.OAuthProfile:
        return gr.OAuthProfile({"name": name, "preferred_username": name, "profile": "",
                                "picture": ""})

    with ctx.session() as s:  # signed in once before being listed: a viewer
        create_user(session=s, actor=SYSTEM, name="carol@hf", password=PASSWORD,
                    role="viewer", hasher=FAST)
    ctx.settings = ctx.settings.model_copy(update={"admins": " dave, carol ,",
                                                   "oauth_default_role": "reviewer"})
    app = auth.ReviewApp(ctx, oauth=True)
    assert app.settings.admin_names == {"dave", "carol"}
    names = [app.username(None, profile(n)) for n in ("dave", "erin", "carol", "Dave")]
    assert names == ["dave@hf", "erin@hf", "carol@hf", "Dave@hf"]
    with ctx.session(readonly=True) as s:
        roles = {n: get_user(s, n).role for n in names}
    assert roles == {"dave@hf": "admin", "erin@hf": "reviewer", "carol@hf": "admin",
                     "Dave@hf": "reviewer"}  # names are matched exactly


def test_user_text_is_inert_in_markdown():
    out = md_escape('<img src=x onerror="alert(1)"> **bold** [link](http://x)')
    assert "<" not in out and ">" not in out and "**" not in out and "](" not in out
    assert "img src" in out


@pytest.mark.parametrize("on_space", [False, True])
def test_the_app_uses_password_login_or_hugging_face_oauth_on_spaces(tmp_path, monkeypatch,
                                                                      on_space):
    from depthweb.ui.app import build_review, review_mount_kwargs, studio_mount_kwargs

    for var in ("SYSTEM", "SPACE_ID", "OAUTH_CLIENT_ID"):
        monkeypatch.delenv(var, raising=False)
    if on_space:
        import gradio.oauth

        monkeypatch.setenv("SYSTEM", "spaces")
        monkeypatch.setenv("SPACE_ID", "someone/depthweb")
        monkeypatch.setenv("OAUTH_CLIENT_ID", "client-id")
        monkeypatch.setattr(auth, "_has_authlib", lambda: True)
        # Gradio's real Hugging Face routes need authlib and the Space's secrets.
        monkeypatch.setattr(gradio.oauth, "_add_oauth_routes", lambda app: None)
    settings = settings_for(tmp_path)
    upgrade(settings.resolved_database_url)
    with ReviewContext.from_settings(settings) as c, c.session() as s:
        create_user(session=s, actor=SYSTEM, name="boss", password=PASSWORD, role="admin",
                    hasher=FAST)
    auth.clear_review_cache()
    try:
        demo = build_review(settings)
        kwargs = review_mount_kwargs(settings)
        apis = {d.api_name for d in demo.fns.values()}
        assert {"review_next", "review_save_mask", "admin_export"} <= apis
        assert not apis & {"predict", "compare", "stereo"}  # the Studio is its own app
        assert demo.expects_oauth is on_space  # the HF button exists only on a Space
        assert ("auth" in kwargs) is (not on_space)  # on a Space: Hugging Face sign-in
        assert "auth" not in studio_mount_kwargs(settings)  # the Studio is always public
    finally:
        auth.clear_review_cache()


@pytest.mark.parametrize("on_space", [False, True])
def test_a_fresh_space_creates_its_database_and_other_fresh_installs_do_not(
        tmp_path, monkeypatch, on_space):
    """No database file yet: on a Space (Hugging Face sign-in, no command line) the review
    platform creates and migrates it; elsewhere ``auto`` keeps the review platform off."""
    for var in ("SYSTEM", "SPACE_ID", "OAUTH_CLIENT_ID"):
        monkeypatch.delenv(var, raising=False)
    if on_space:
        monkeypatch.setenv("SYSTEM", "spaces")
        monkeypatch.setenv("SPACE_ID", "someone/depthweb")
        monkeypatch.setenv("OAUTH_CLIENT_ID", "client-id")
        monkeypatch.setattr(auth, "_has_authlib", lambda: True)
    settings = settings_for(tmp_path)
    db = Path(make_url(settings.resolved_database_url).database)
    assert not db.exists()
    auth.clear_review_cache()
    try:
        app = auth.review_setup(settings)
        assert (app is not None) is on_space
        assert db.is_file() is on_space
        if on_space:
            assert app.oauth
            with app.ctx.session(readonly=True) as s:  # the schema is there and current
                assert get_user(s, "nobody") is None
    finally:
        auth.clear_review_cache()


def test_without_users_the_studio_is_unchanged(tmp_path):
    from depthweb.ui.app import build_review, build_studio, studio_mount_kwargs

    auth.clear_review_cache()
    settings = settings_for(tmp_path)
    demo = build_studio(settings)
    apis = {d.api_name for d in demo.fns.values()}
    assert "predict" in apis and not any(str(a).startswith(("review_", "admin_"))
                                         for a in apis)
    assert "auth" not in studio_mount_kwargs(settings)
    assert build_review(settings) is None  # no users, auto: no review platform
