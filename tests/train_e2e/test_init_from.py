"""Fine-tuning: a run that starts from a saved or registered student's weights
(``TrainConfig.init_from``, ``depthweb train --init-from``)."""

from __future__ import annotations

import pytest
from safetensors.torch import load_file

from depthweb.errors import InputError
from depthweb.services import train as svc
from depthweb.training import registry
from tests.train_e2e.conftest import TINY, settings_for, tiny_export


def _weights(folder):
    return load_file(str(folder / "model.safetensors"))


def test_a_run_with_no_learning_rate_keeps_the_starting_weights(tiny_run, tmp_path):
    """With lr 0 the optimizer changes nothing, so the trained student is exactly where the run
    started: the source student's weights, not a random initialisation."""
    from depthweb.training.loop import train

    source = tiny_run / "student"
    export = tiny_export(tmp_path / "export")
    frozen = {**TINY, "lr": 0.0, "steps": 2}
    cfg = svc.build_config(export, frozen, init_from=source)
    assert cfg.init_from == str(source.resolve())
    out = train(cfg, tmp_path / "run", progress=False)
    before, after = _weights(source), _weights(out.student_dir)
    assert before.keys() == after.keys()
    assert all((before[k] == after[k]).all() for k in before)
    scratch = train(svc.build_config(export, frozen), tmp_path / "scratch", progress=False)
    differs = _weights(scratch.student_dir)
    assert any((before[k] != differs[k]).any() for k in before)  # random init is not the source


def test_a_registered_student_is_named_and_fine_tuned_through_the_service(tiny_run, tmp_path):
    settings = settings_for(tmp_path)
    registry.register_student(tiny_run, name="teacher-one", settings=settings)
    export = tiny_export(tmp_path / "export")
    out = svc.train_student(export, TINY, tmp_path / "run", name="fine-tuned",
                            init_from="teacher-one", progress=False, settings=settings)
    assert out.student is not None and out.student.name == "fine-tuned"
    assert registry.get_student("fine-tuned", settings).path.is_dir()


@pytest.mark.parametrize("change, needle", [
    ({"model": {**TINY["model"], "widths": [8, 12, 24]}}, "widths"),
    ({"model": {**TINY["model"], "coord_channel": False}}, "coord_channel"),
])
def test_a_student_of_another_architecture_is_refused(tiny_run, tmp_path, change, needle):
    export = tiny_export(tmp_path / "export")
    with pytest.raises(InputError, match=needle) as err:
        svc.build_config(export, {**TINY, **change}, init_from=tiny_run / "student")
    assert str(err.value).count(". ") == 0  # one sentence


def test_unknown_students_and_folders_are_refused(tiny_run, tmp_path):
    export = tiny_export(tmp_path / "export")
    with pytest.raises(InputError, match="No registered student"):
        svc.build_config(export, TINY, init_from="nobody", settings=settings_for(tmp_path))
    with pytest.raises(InputError, match="neither a student folder"):
        svc.build_config(export, TINY, init_from=str(tmp_path / "missing" / "student"))
    with pytest.raises(InputError, match="not a saved student folder"):
        svc.build_config(export, TINY, init_from=tmp_path)


def test_the_cli_fine_tunes_from_a_registered_student(tiny_run, cli, tmp_path):
    export = tiny_export(tmp_path / "export")
    config = tmp_path / "tiny.json"
    import json

    config.write_text(json.dumps(TINY))
    code, out, err = cli("train", "--data", export, "--config", config, "-o", tmp_path / "r1",
                         "--name", "first")
    assert code == 0, err
    code, out, err = cli("train", "--data", export, "--config", config, "-o", tmp_path / "r2",
                         "--name", "second", "--init-from", "first")
    assert code == 0, err
    assert "registered student second" in out
    code, out, err = cli("train", "--data", export, "--config", config, "-o", tmp_path / "r3",
                         "--init-from", "nobody")
    assert code != 0 and "No registered student" in err
