"""The training service: configs built around an export, run folders guarded, background runs
(progress, stop, one at a time), admin-only web calls, and the loss curve."""

from __future__ import annotations

import shutil
import threading

import pytest
from argon2 import PasswordHasher

from depthweb.errors import InputError
from depthweb.services import train as svc
from depthweb.services import train_runs as runs
from depthweb.services.evaluation import comparison_rows
from depthweb.services.review import ReviewContext
from depthweb.store import SYSTEM, PermissionDeniedError, create_user, upgrade
from depthweb.training import registry
from tests.train_e2e.conftest import TINY, settings_for, tiny_export, write_eval_folder


@pytest.fixture
def export(tmp_path):
    return tiny_export(tmp_path / "export")


def test_the_export_replaces_export_sources_and_keeps_synthetic_ones(export, tmp_path):
    data = {**TINY, "data": [{"type": "export", "path": "/somewhere/else"},
                             {"type": "synthetic", "count": 3, "seed": 1}]}
    cfg = svc.build_config(export, data, steps=7, device="cpu")
    assert [(s.type, s.path) for s in cfg.data] == [("export", str(export.resolve())),
                                                     ("synthetic", None)]
    assert cfg.steps == 7 and cfg.device == "cpu" and cfg.model.widths == [8, 12, 16]
    assert data["data"][0]["path"] == "/somewhere/else"  # the caller's dict is not changed
    preset = svc.build_config(export, "tiny")
    assert preset.steps == svc.PRESETS["tiny"]["steps"] and len(preset.data) == 1


def test_config_files_and_their_errors(export, tmp_path):
    good = tmp_path / "c.json"
    good.write_text('{"steps": 3, "model": {"widths": [8, 16]}}')
    assert svc.build_config(export, good).steps == 3
    (tmp_path / "bad.yaml").write_text("steps: [unclosed")
    (tmp_path / "typo.yaml").write_text("stepz: 3")
    with pytest.raises(InputError, match="unreadable"):
        svc.build_config(export, tmp_path / "bad.yaml")
    with pytest.raises(InputError, match="unknown config key"):
        svc.build_config(export, tmp_path / "typo.yaml")
    with pytest.raises(InputError, match="not found"):
        svc.build_config(export, tmp_path / "missing.yaml")
    with pytest.raises(InputError, match="not a training-set export"):
        svc.build_config(tmp_path, "tiny")


def test_a_run_folder_is_never_overwritten_without_resume(tiny_run, tmp_path):
    with pytest.raises(InputError, match="already holds a training run"):
        svc.check_run_dir(tiny_run, resume=False)
    svc.check_run_dir(tiny_run, resume=True)
    with pytest.raises(InputError, match="no checkpoint to resume"):
        svc.check_run_dir(tmp_path / "new", resume=True)
    svc.check_run_dir(tmp_path / "new", resume=False)


def test_a_background_run_reports_progress_and_registers(export, tmp_path):
    settings = settings_for(tmp_path)
    seen: list[int] = []
    manager = runs.TrainManager()

    def work(job):
        def cb(event):
            seen.append(event.step)
            return job.on_progress(event)

        return svc.train_student(export, TINY, tmp_path / "run", name="bg", callback=cb,
                                 progress=False, phase=job.set_phase, settings=settings)

    job = manager.start(runs.RunState("bg", str(tmp_path / "run"), 4), work)
    state = job.join(120)
    assert state.phase == "finished" and state.message == "Registered as bg."
    assert state.step == 4 and seen == [1, 2, 3, 4] and state.loss is not None
    assert registry.get_student("bg", settings).meta["metrics"]["train"]["steps"] == 4
    curve = svc.loss_curve(tmp_path / "run")
    assert [r["series"] for r in curve] == ["loss", "smoothed"] * 4
    assert curve[0]["loss"] == curve[1]["loss"]  # the average starts at the first loss


def test_a_stopped_run_is_not_registered_and_can_resume(export, tmp_path):
    settings = settings_for(tmp_path)
    state = runs.RunState("halt", str(tmp_path / "run"), 4)
    job = runs.TrainJob(state, lambda j: svc.train_student(
        export, TINY, tmp_path / "run", name="halt", callback=j.on_progress, progress=False,
        settings=settings))
    job.stop()  # asked before the first step: the loop stops after step 1
    state = job.start().join(120)
    assert state.phase == "stopped" and state.step == 1 and "checkpoint" in state.message
    assert registry.list_students(settings) == []
    done = svc.train_student(export, TINY, tmp_path / "run", name="halt", resume=True,
                             progress=False, settings=settings)
    assert done.result.steps == 4 and done.student is not None


def test_one_run_at_a_time(tmp_path):
    manager = runs.TrainManager()
    release = threading.Event()

    def wait(job):
        release.wait(30)
        raise InputError("The export has no usable rows.")

    manager.start(runs.RunState("first", str(tmp_path), 1), wait)
    with pytest.raises(InputError, match="still going"):
        manager.start(runs.RunState("second", str(tmp_path), 1), wait)
    release.set()
    state = manager.job.join(30)
    assert state.phase == "failed" and state.message == "The export has no usable rows."
    third = manager.start(runs.RunState("third", str(tmp_path), 1), wait)  # the first ended
    assert third.join(30).name == "third" and manager.job is third


@pytest.fixture
def web(tmp_path, export):
    """A migrated SQLite file with an admin and a reviewer, and the export under exports/."""
    settings = settings_for(tmp_path)
    upgrade(settings.resolved_database_url)
    fast = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    with ReviewContext.from_settings(settings) as ctx:
        with ctx.session() as s:
            for name, role in (("boss", "admin"), ("rev", "reviewer")):
                create_user(session=s, actor=SYSTEM, name=name, password="pw-123456789",
                            role=role, hasher=fast)
        shutil.copytree(export, settings.data_dir / "exports" / "e1")
        yield ctx


def test_web_runs_are_for_admins_only(web):
    manager = runs.TrainManager()
    for user in ("rev", None, "nobody"):
        with pytest.raises(PermissionDeniedError):
            runs.start_web_run(manager, web, user, export="e1", preset="tiny")
        with pytest.raises(PermissionDeniedError):
            runs.web_status(manager, web, user)
        with pytest.raises(PermissionDeniedError):
            runs.export_names(web, user)
    assert manager.job is None and not (web.settings.data_dir / "runs").exists()
    assert runs.export_names(web, "boss") == ["e1"]
    with pytest.raises(InputError, match="plain name"):
        runs.start_web_run(manager, web, "boss", export="../export", preset="tiny")
    with pytest.raises(InputError, match="Unknown preset"):
        runs.start_web_run(manager, web, "boss", export="e1", preset="huge")


def test_an_admin_web_run_trains_registers_and_compares(web, tmp_path):
    manager = runs.TrainManager()
    folder = write_eval_folder(tmp_path / "eval" / "nyu", n=2)
    state = runs.start_web_run(manager, web, "boss", export="e1", preset="tiny", steps=3,
                              name="web-student", eval_dir=str(folder))
    assert state.name == "web-student" and state.total_steps == 3
    final = manager.job.join(180)
    assert final.phase == "finished", final.message
    assert runs.web_status(manager, web, "boss").phase == "finished"
    rows = comparison_rows(final.comparison)
    assert [r[:4] for r in rows] == [["student", "web-student", "nyu", 2]]
    assert final.comparison["teacher_error"]  # the export's teacher weights are not here
    meta = registry.get_student("web-student", web.settings).meta
    assert meta["run_dir"] == str(web.settings.data_dir / "runs" / "web-student")
    assert meta["metrics"]["eval"]["student"]["nyu"]["abs_rel"] == pytest.approx(rows[0][4],
                                                                                 abs=1e-4)
    with pytest.raises(InputError, match="already registered"):
        runs.start_web_run(manager, web, "boss", export="e1", preset="tiny", name="web-student")
