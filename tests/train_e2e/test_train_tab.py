"""The Train tab behind the real app (review on, password login) through gradio_client: an admin
starts a run and follows it to the registered student; a reviewer is refused on the server."""

from __future__ import annotations

import json
import shutil
import time

import pytest
from argon2 import PasswordHasher

from depthweb.config import Settings
from depthweb.training import registry
from tests.builders import build_tiny_depth_anything
from tests.train_e2e.conftest import TEACHER, tiny_export, write_eval_folder

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def train_app(tmp_path_factory):
    """The app on a fresh SQLite file with users boss (admin) and rev (reviewer) and one
    export, served in this process; yields (url, settings)."""
    from depthweb.server import start_in_thread
    from depthweb.services.review import ReviewContext
    from depthweb.store import SYSTEM, create_user, upgrade
    from depthweb.ui.auth import clear_review_cache
    from tests.app.studio_server import free_port

    root = tmp_path_factory.mktemp("train-app")
    settings = Settings(data_dir=root / "data", output_dir=root / "outputs", device="cpu",
                        review="on")
    upgrade(settings.resolved_database_url)
    fast = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    with ReviewContext.from_settings(settings) as ctx, ctx.session() as s:
        for name, role in (("boss", "admin"), ("rev", "reviewer")):
            create_user(session=s, actor=SYSTEM, name=name, password=PASSWORD, role=role,
                        hasher=fast)
    teacher = build_tiny_depth_anything(root / "teacher")
    export = tiny_export(root / "export", teacher_weights=str(teacher))
    shutil.copytree(export, settings.data_dir / "exports" / "rooms")
    write_eval_folder(settings.data_dir / "eval" / "nyu", n=2)
    running = start_in_thread(settings, port=free_port(), timeout_s=300)
    try:
        yield running.review_url, settings
    finally:
        running.close()
        clear_review_cache()


def client(url: str, name: str):
    from gradio_client import Client

    return Client(url, auth=(name, PASSWORD), verbose=False, analytics_enabled=False)


def test_an_admin_trains_from_the_tab_and_sees_the_comparison(train_app):
    url, settings = train_app
    boss = client(url, "boss")
    export, folders = boss.predict(api_name="/train_lists")
    assert export["value"] == "rooms" and export["choices"] == [["rooms", "rooms"]]
    nyu = str(settings.data_dir / "eval" / "nyu")
    assert [nyu, nyu] in folders["choices"]
    status, _curve, _table, _timer = boss.predict("rooms", "tiny", 3, "tab-student", nyu,
                                                  api_name="/train_start")
    assert "tab-student" in status
    deadline = time.monotonic() + 180
    while "finished" not in status and "failed" not in status and time.monotonic() < deadline:
        time.sleep(0.5)
        status, curve, table, _timer = boss.predict(api_name="/train_status")
    assert "finished" in status and "step 3/3" in status and "Registered as tab-student" \
        in status, status
    assert registry.get_student("tab-student", settings).meta["metrics"]["train"]["steps"] == 3
    steps = [row[0] for row in curve["data"] if row[2] == "loss"]
    assert curve["columns"] == ["step", "loss", "series"] and steps == [1, 2, 3]
    rows = {row[0]: row for row in table["data"]}
    assert table["headers"][:5] == ["role", "model", "dataset", "frames", "AbsRel"]
    assert rows["student"][1:4] == ["tab-student", "nyu", 2]
    assert rows["teacher"][1:4] == [TEACHER, "nyu", 2]
    assert all(0 < rows[r][4] < 5 and 0 <= rows[r][6] <= 1 for r in rows)

    # the registered student is the starting point of the next run (fine-tuning)
    status, *_ = boss.predict("rooms", "tiny", 2, "tab-fine", None, "tab-student",
                              api_name="/train_start")
    deadline = time.monotonic() + 180
    while "finished" not in status and "failed" not in status and time.monotonic() < deadline:
        time.sleep(0.5)
        status, *_ = boss.predict(api_name="/train_status")
    assert "Registered as tab-fine" in status, status
    run_config = json.loads((settings.data_dir / "runs" / "tab-fine" / "train_config.json")
                            .read_text())
    assert run_config["init_from"] == str(registry.get_student("tab-student", settings).path)
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="No registered student called 'nobody'"):
        boss.predict("rooms", "tiny", 2, "tab-x", None, "nobody", api_name="/train_start")


def test_a_reviewer_cannot_start_or_watch_a_run(train_app):
    from gradio_client.exceptions import AppError

    url, settings = train_app
    rev = client(url, "rev")
    with pytest.raises(AppError, match="needs admin"):
        rev.predict(None, "tiny", 2, "rev-student", None, api_name="/train_start")
    with pytest.raises(AppError, match="needs admin"):
        rev.predict(api_name="/train_status")
    with pytest.raises(AppError, match="needs admin"):
        rev.predict(api_name="/train_lists")
    assert not (settings.data_dir / "students" / "rev-student").exists()
    assert not (settings.data_dir / "runs" / "rev-student").exists()
