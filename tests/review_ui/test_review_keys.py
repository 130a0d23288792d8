"""Keyboard shortcuts and undo in real headless Chromium: the shortcuts are shown on the page,
N loads the next task, a saved ordinal pair is undone with U (a new revision, history kept),
typing in a text field never triggers a shortcut, and A approves. Screenshots go to
``test-artifacts/review/``."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from depthweb.store import SYSTEM, create_user
from depthweb.store.models import Revision, Task
from tests.review.conftest import make_tasks, scene_disparity
from tests.review_ui.server import PASSWORD
from tests.review_ui.test_review_browser import click_image_pixel, log_in
from tests.review_ui.test_review_browser import wait_status as _wait_status

pytestmark = pytest.mark.e2e


@pytest.fixture
def keys_world(ctx):
    """A reviewer and a dataset of two tasks of their own (the session server is shared)."""
    from argon2 import PasswordHasher

    from depthweb.store import get_user

    with ctx.session() as s:
        if get_user(s, "keys") is None:
            create_user(session=s, actor=SYSTEM, name="keys", password=PASSWORD,
                        role="reviewer", hasher=PasswordHasher(time_cost=1, memory_cost=1024,
                                                               parallelism=1))
    name = f"keys{len(list(ctx.store.iter_files()))}"
    return name, make_tasks(ctx, [scene_disparity(i, 120, 160) for i in range(2)],
                            dataset=name)


def wait_status(page, fragment: str) -> str:
    try:
        return _wait_status(page, fragment)
    except Exception:
        from tests.review_ui.conftest import ARTIFACTS

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "keys-failed.png"), full_page=True)
        raise


def actions_of(ctx, task_id: int) -> list[str]:
    with ctx.session(readonly=True) as s:
        return list(s.scalars(select(Revision.action).where(Revision.task_id == task_id)
                              .order_by(Revision.task_version)))


def test_shortcuts_are_shown_and_undo_and_approve_work_from_the_keyboard(
    review_server, browser, artifacts, ctx, keys_world
):
    dataset, tasks = keys_world
    page = log_in(browser, review_server.url, "keys")
    page.get_by_role("tab", name="Review").click()
    shortcuts = page.locator("#review-shortcuts").inner_text()
    assert "A approve" in shortcuts.replace("`", "") or "A" in shortcuts
    for key in ("approve", "reject", "next task", "undo"):
        assert key in shortcuts
    page.locator("#review-dataset input").click()
    page.get_by_role("option", name=dataset).click()
    page.locator("#review-shortcuts").click()  # focus out of the dropdown
    page.keyboard.press("n")
    status = wait_status(page, "is yours")
    task_id = int(status.split("Task ")[1].split(" ")[0])
    assert task_id == tasks[-1]  # the higher priority one

    page.get_by_text("Ordinal pair (click closer A, then farther B)").click()
    # two quick clicks (the second before the first is answered): both count
    click_image_pixel(page, "#review-photo", 80 * 1.0, 10 * 1.0)
    click_image_pixel(page, "#review-photo", 80 * 1.0, 110 * 1.0)
    page.wait_for_function("() => document.querySelector('#review-pairs').innerText"
                           ".includes('110')")
    page.locator("#review-save-pairs").click()
    wait_status(page, "Saved: ordinal pairs")
    assert actions_of(ctx, task_id) == ["ordinal"]
    page.screenshot(path=str(artifacts / "keys-after-pair.png"))

    page.locator("#review-note textarea").fill("u a r n")  # typing is not a shortcut
    page.locator("#review-shortcuts").click()
    assert actions_of(ctx, task_id) == ["ordinal"]
    page.keyboard.press("u")
    wait_status(page, "Saved: undo")
    assert actions_of(ctx, task_id) == ["ordinal", "undo"]  # a new revision, history kept
    rows = page.locator("#review-history").inner_text()
    assert "undo" in rows and "ordinal" in rows
    page.screenshot(path=str(artifacts / "keys-after-undo.png"))

    page.keyboard.press("a")
    wait_status(page, "Saved: approve")
    with ctx.session(readonly=True) as s:
        assert s.get(Task, task_id).status == "approved"
    assert actions_of(ctx, task_id) == ["ordinal", "undo", "approve"]
    page.screenshot(path=str(artifacts / "keys-after-approve.png"))
    page.context.close()
