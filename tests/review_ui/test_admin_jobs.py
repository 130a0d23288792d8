"""The Admin tab's jobs table against the launched app: a pseudo-label job an admin starts
through its endpoint shows as done with done == total, next to the import that fed it; a
``depthweb pseudo-label`` run from a terminal on the same database shows up too; the page
wires the table to a timer that starts inactive (it runs only while the Admin tab is shown)."""

from __future__ import annotations

import pytest

from tests.faults import kit
from tests.review_ui.server import TEACHER

pytestmark = pytest.mark.slow


def jobs(admin) -> list[dict]:
    out = admin.predict(api_name="/admin_jobs")
    return [dict(zip(out["headers"], row, strict=True)) for row in out["data"]]


def test_a_web_pseudo_label_job_shows_done_in_the_jobs_table(login, review_server, tmp_path):
    from gradio_client import handle_file

    from tests.review.conftest import write_images

    photos = write_images(tmp_path / "photos", range(3), scene=True)
    admin = login("boss")
    before = {row["job"] for row in jobs(admin)}
    imported = admin.predict([handle_file(str(p)) for p in photos], "jobs-web",
                             api_name="/admin_import")
    assert "3 added" in imported
    labelled = admin.predict("jobs-web", TEACHER, str(review_server.teacher_weights), 2, "none",
                             0, api_name="/admin_pseudo_label")
    assert "3 labelled" in labelled
    new = [row for row in jobs(admin) if row["job"] not in before]
    assert [(r["kind"], r["dataset"], r["started by"]) for r in new] == [
        ("pseudo-label", "jobs-web", "boss"), ("import", "jobs-web", "boss")]  # newest first
    label_job = new[0]
    assert (label_job["model"], label_job["status"]) == (TEACHER, "done")
    assert label_job["done"] == label_job["total"] == 3
    assert "3 labelled" in label_job["message"] and label_job["finished (UTC)"]
    assert (new[1]["status"], new[1]["done"], new[1]["total"]) == ("done", 3, 3)


def test_a_cli_pseudo_label_run_appears_in_the_jobs_table(login, review_server, tmp_path):
    from depthweb.services.review import ReviewContext, import_images
    from depthweb.store import SYSTEM
    from tests.review.conftest import write_images

    photos = write_images(tmp_path / "photos", range(10, 12), scene=True)
    with ReviewContext.from_settings(review_server.settings()) as ctx:
        assert import_images(ctx, photos, dataset="jobs-cli", user=SYSTEM).added == 2
    argv = ["pseudo-label", "--dataset", "jobs-cli", "-m", TEACHER, "--weights",
            str(review_server.teacher_weights), "--batch-size", "2", "--uncertainty", "none"]
    code, out = kit.run(argv, kit.child_env(review_server.data_dir, None), tmp_path / "cli",
                        "cli")
    assert code == 0, out
    [row] = [r for r in jobs(login("boss")) if r["dataset"] == "jobs-cli"]
    assert (row["kind"], row["started by"], row["status"], row["done"], row["total"]) == (
        "pseudo-label", "system", "done", 2, 2)


def test_the_jobs_table_is_on_the_page_with_a_timer(login, review_server):
    from depthweb.ui.admin_tab import JOBS_REFRESH_S

    config = login("boss").config
    by_id = {c["id"]: c for c in config["components"]}
    [table] = [c for c in by_id.values() if c.get("props", {}).get("elem_id") == "admin-jobs"]
    ticks = [d for d in config["dependencies"] if table["id"] in d["outputs"]
             and any(by_id.get(t[0], {}).get("type") == "timer" and t[1] == "tick"
                     for t in d["targets"])]
    assert len(ticks) == 1
    timer = by_id[ticks[0]["targets"][0][0]]
    assert timer["props"]["value"] == JOBS_REFRESH_S
    assert timer["props"]["active"] is False  # started by the Admin tab, for admins
    # the Admin tab's Tabs turn it on and off, and selecting the tab loads the table
    switches = [d for d in config["dependencies"] if timer["id"] in d["outputs"]]
    assert {t[1] for d in switches for t in d["targets"]} >= {"tick", "select"}


@pytest.mark.e2e
def test_the_admin_tab_shows_a_running_job_without_a_click(browser, review_server):
    """Chromium: the admin opens the Admin tab; a job started elsewhere (here: in the test
    process, on the same database) appears in the Jobs table and then shows as done, each
    time without a click (the table's timer runs while the tab is shown)."""
    from depthweb.services.review import ReviewContext
    from depthweb.services.review.jobs import JobTracker
    from depthweb.store import SYSTEM
    from depthweb.store.models import JobKind
    from tests.review_ui.test_review_browser import log_in, wait_text

    page = log_in(browser, review_server.url, "boss")
    try:
        page.get_by_role("tab", name="Admin").click()
        page.wait_for_selector("#admin-jobs")
        with ReviewContext.from_settings(review_server.settings()) as ctx, \
                JobTracker(ctx, JobKind.EXPORT, "watched-from-the-browser", SYSTEM) as job:
            job.start(total=4)
            job.progress(1)
            row = wait_text(page, "#admin-jobs", "watched-from-the-browser")
            assert "running" in row
            job.finish("exported 4 items")
            wait_text(page, "#admin-jobs", "exported 4 items")
    finally:
        page.context.close()


@pytest.mark.e2e
def test_opening_the_admin_tab_shows_the_platform_as_it_is_now(browser, review_server):
    """Chromium: the Admin tables load when the page opens, and again each time the Admin tab
    is opened, so an admin who reviewed for a while sees the queue as it is now (a dataset
    created after the page loaded is offered at once, without Refresh)."""
    from depthweb.services.review import ReviewContext
    from depthweb.store import SYSTEM
    from depthweb.store.repo import create_dataset
    from tests.review_ui.test_review_browser import log_in

    page = log_in(browser, review_server.url, "boss")
    name = "made-after-the-page-loaded"
    try:
        page.get_by_role("tab", name="Admin").click()
        page.wait_for_function("() => (document.querySelector('#admin-status')?.innerText || '')"
                               ".includes('tasks,')")
        page.locator("#admin-dataset input").click()
        assert page.get_by_role("option", name=name).count() == 0
        page.keyboard.press("Escape")
        with ReviewContext.from_settings(review_server.settings()) as ctx, ctx.session() as s:
            create_dataset(session=s, user=SYSTEM, name=name)
        page.get_by_role("tab", name="Review").click()
        page.get_by_role("tab", name="Admin").click()
        page.wait_for_timeout(200)
        page.locator("#admin-dataset input").click()
        page.get_by_role("option", name=name).wait_for(timeout=30_000)
    finally:
        page.context.close()
