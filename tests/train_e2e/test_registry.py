"""The student registry: a finished run registers with its provenance, is listed as a model,
loads by name from the registry folder (not the run), and bad names / runs are refused."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

from depthweb.errors import InputError
from depthweb.models.registry import get_spec, list_specs, load_backend
from depthweb.training import registry
from depthweb.types import DepthKind
from tests.train_e2e.conftest import TEACHER, settings_for, tiny_export


def test_a_registered_student_is_listed_and_loads_by_name(tiny_run, tmp_path):
    settings = settings_for(tmp_path)
    record = registry.register_student(tiny_run, name="rooms-v1", settings=settings)
    export = tiny_run.parent / "export"
    sha = hashlib.sha256((export / "manifest.jsonl").read_bytes()).hexdigest()
    meta = json.loads((record.path / "meta.json").read_text())
    assert record.path == settings.data_dir / "students" / "rooms-v1"
    assert meta["name"] == "rooms-v1" and meta["parent_teacher"] == TEACHER
    assert meta["parent_teacher_weights"] == "/weights/of/teacher"
    assert meta["data_version"] == sha and meta["data"][0]["count"] == 6
    assert meta["metrics"]["train"]["steps"] == 4 and meta["run_dir"] == str(tiny_run)
    assert meta["kind"] == "relative_disparity" and meta["input_size"] == 64
    assert [r.name for r in registry.list_students(settings)] == ["rooms-v1"]

    spec = get_spec("rooms-v1", settings)
    assert spec.family == "student" and spec.kind is DepthKind.RELATIVE_DISPARITY
    assert TEACHER in spec.description and sha[:12] in spec.description
    assert "rooms-v1" in [s.name for s in list_specs(settings)]
    backend = load_backend("rooms-v1", device="cpu", settings=settings)
    rgb = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    result = backend.infer_image(rgb)
    assert result.model == "rooms-v1" and result.depth.shape == (50, 70)
    assert result.weights == str(record.path.resolve())
    assert np.isfinite(result.depth).all() and np.ptp(result.depth) > 0


def test_the_registry_keeps_its_own_copy_of_the_weights(tiny_run, tmp_path):
    settings = settings_for(tmp_path)
    run = tmp_path / "run-copy"
    shutil.copytree(tiny_run, run)
    record = registry.register_student(run, settings=settings)
    assert record.name == "run-copy"  # default name: the run folder's
    shutil.rmtree(run)
    backend = load_backend("run-copy", device="cpu", settings=settings)
    assert backend.infer_image(np.zeros((32, 48, 3), np.uint8)).depth.shape == (32, 48)


def test_a_taken_name_is_refused_and_the_first_student_is_untouched(tiny_run, tmp_path):
    settings = settings_for(tmp_path)
    first = registry.register_student(tiny_run, name="dup", settings=settings)
    before = (first.path / "meta.json").read_text()
    with pytest.raises(registry.DuplicateStudentError, match="already registered"):
        registry.register_student(tiny_run, name="dup", settings=settings)
    assert (first.path / "meta.json").read_text() == before
    assert [p.name for p in (settings.data_dir / "students").iterdir()] == ["dup"]


@pytest.mark.parametrize("name", ["depth-anything-v2-small", "depthweb-student", "ground_truth",
                                  "Has Space", "-lead", "trail-", "x" * 65, "a/b"])
def test_unusable_names_are_refused(tiny_run, tmp_path, name):
    with pytest.raises(InputError):
        registry.register_student(tiny_run, name=name, settings=settings_for(tmp_path))
    assert not (tmp_path / "data" / "students").exists() or \
        not any((tmp_path / "data" / "students").iterdir())


def test_a_bad_run_folder_is_a_sentence(tmp_path):
    settings = settings_for(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        registry.register_student(tmp_path / "nope", settings=settings)
    (tmp_path / "half" / "student").mkdir(parents=True)
    (tmp_path / "half" / "student" / "config.json").write_text("{}")
    with pytest.raises(InputError, match=r"no trained student \(model.safetensors missing"):
        registry.register_student(tmp_path / "half", settings=settings)


def test_a_broken_registry_entry_is_skipped_not_fatal(tiny_run, tmp_path):
    settings = settings_for(tmp_path)
    registry.register_student(tiny_run, name="good", settings=settings)
    bad = settings.data_dir / "students" / "bad"
    shutil.copytree(settings.data_dir / "students" / "good", bad)
    (bad / "meta.json").write_text("{not json")
    names = [s.name for s in list_specs(settings)]
    assert "good" in names and "bad" not in names
    with pytest.raises(InputError, match="No registered student called 'bad'"):
        registry.get_student("bad", settings)


def test_models_cli_lists_registered_students(tiny_run, tmp_path, cli):
    registry.register_student(tiny_run, name="cli-student", settings=settings_for(tmp_path))
    code, out, _ = cli("models", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0 and rows["cli-student"]["family"] == "student"
    assert rows["cli-student"]["cached"] is True
    assert rows["cli-student"]["kind"] == "relative_disparity"


def test_metrics_are_recorded_atomically(tiny_run, tmp_path):
    settings = settings_for(tmp_path)
    registry.register_student(tiny_run, name="m", settings=settings)
    record = registry.record_metrics("m", "eval", {"nyu": {"abs_rel": 0.2}}, settings)
    assert record.meta["metrics"]["eval"] == {"nyu": {"abs_rel": 0.2}}
    assert record.meta["metrics"]["train"]["steps"] == 4
    assert json.loads((record.path / "meta.json").read_text()) == record.meta
    assert sorted(p.name for p in record.path.iterdir()) == ["config.json", "meta.json",
                                                             "model.safetensors"]


@pytest.mark.parametrize(("folder", "expected"), [
    ("My Run 2", "my-run-2"), ("rooms_v1.0", "rooms_v1.0"), ("___", "student"),
])
def test_default_names_come_from_the_run_folder(tmp_path, folder, expected):
    assert registry.default_name(tmp_path / folder) == expected


def test_data_version_of_several_sources_depends_on_each(tmp_path):
    a = tiny_export(tmp_path / "a", n=2)
    b = tiny_export(tmp_path / "b", n=3, teacher="other-teacher")
    syn = {"type": "synthetic", "count": 10, "seed": 0}
    one = registry.data_provenance({"data": [{"type": "export", "path": str(a)}]})
    two = registry.data_provenance({"data": [{"type": "export", "path": str(a)},
                                             {"type": "export", "path": str(b)}]})
    mixed = registry.data_provenance({"data": [{"type": "export", "path": str(a)}, syn]})
    only_syn = registry.data_provenance({"data": [syn]})
    assert len({one["data_version"], two["data_version"], mixed["data_version"]}) == 3
    assert one["parent_teacher"] == TEACHER and only_syn["parent_teacher"] is None
    assert only_syn["data_version"].startswith("synthetic:")
