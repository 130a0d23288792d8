"""The training loop: loss goes down, resume continues at the right step, exports train."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from depthweb.training.config import config_from_dict, load_config
from depthweb.training.datasets import SyntheticDataset
from depthweb.training.loop import lr_factor, read_metrics, train

TINY = {"model": {"widths": [8, 12, 16], "input_size": 32}, "image_size": [32, 48],
        "batch_size": 4, "lr": 0.005, "warmup_steps": 0, "threads": 1}


def _config(**over):
    data = {**TINY, "data": [{"type": "synthetic", "count": 4, "seed": 3}], **over}
    return config_from_dict(data)


@pytest.fixture(scope="module")
def tiny_scenes():
    ds = SyntheticDataset(4, (32, 48), seed=3)
    ds.prerender()
    return ds


def test_a_few_steps_reduce_the_loss(tmp_path, tiny_scenes):
    torch.manual_seed(0)
    cfg = _config(steps=40, hflip=False, checkpoint_every=1000)
    result = train(cfg, tmp_path / "run", progress=False, dataset=tiny_scenes)
    losses = [m["loss"] for m in read_metrics(tmp_path / "run")]
    assert len(losses) == 40 and result.steps == 40
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5
    assert (tmp_path / "run" / "student" / "model.safetensors").is_file()


def test_resume_continues_at_the_right_step(tmp_path, tiny_scenes):
    cfg = _config(steps=6, checkpoint_every=2, ema_decay=0.9)
    straight = train(cfg, tmp_path / "straight", progress=False, dataset=tiny_scenes)
    seen = []

    def stop_at_3(event):
        seen.append(event.step)
        return event.step == 3

    first = train(cfg, tmp_path / "resumed", progress=False, dataset=tiny_scenes,
                  callback=stop_at_3)
    assert first.stopped_early and first.steps == 3 and seen == [1, 2, 3]
    second = train(cfg, tmp_path / "resumed", progress=False, dataset=tiny_scenes,
                   callback=lambda e: seen.append(e.step))
    assert seen == [1, 2, 3, 4, 5, 6] and second.steps == 6
    assert [m["step"] for m in read_metrics(tmp_path / "resumed")] == [1, 2, 3, 4, 5, 6]
    a = load_file(str(straight.student_dir / "model.safetensors"))
    b = load_file(str(second.student_dir / "model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)  # as if never stopped
    ckpts = sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir())
    assert ckpts == ["step_0000004", "step_0000006"]  # keep_checkpoints=2
    raw = load_file(str(tmp_path / "resumed" / "checkpoints" / ckpts[-1] / "model.safetensors"))
    assert not all(torch.equal(raw[k], b[k]) for k in b)  # the student is the weight average


def test_training_on_an_export_with_pseudo_labels(tmp_path, export_dir):
    cfg = config_from_dict({**TINY, "steps": 3, "batch_size": 4, "checkpoint_every": 10,
                            "data": [{"type": "export", "path": str(export_dir)}],
                            "perturb": {"cutmix_prob": 1.0, "blur_prob": 1.0}})
    result = train(cfg, tmp_path / "run", progress=False)
    assert result.steps == 3 and torch.isfinite(torch.tensor(result.last_loss))
    saved = json.loads((result.student_dir / "config.json").read_text())
    assert saved["model_type"] == "depthweb_student" and saved["training"]["steps"] == 3


def test_metric_student_trains_with_silog(tmp_path, export_dir):
    cfg = config_from_dict({**TINY, "steps": 2, "checkpoint_every": 10,
                            "model": {**TINY["model"], "kind": "metric_depth"},
                            "loss": {"target": "metric"},
                            "data": [{"type": "export", "path": str(export_dir)}]})
    result = train(cfg, tmp_path / "run", progress=False)
    assert result.steps == 2 and result.last_loss > 0


def test_lr_schedule_warms_up_then_decays():
    assert lr_factor(0, 100, 10, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, 0.1) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10, 0.1) == pytest.approx(1.0)
    assert lr_factor(100, 100, 10, 0.1) == pytest.approx(0.1)
    assert lr_factor(55, 100, 10, 0.1) == pytest.approx(0.55)


def test_config_from_yaml_and_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: {widths: [8, 16]}\ndata:\n  - {type: synthetic, count: 5}\n"
                    "steps: 7\nimage_size: [64, 96]\nloss: {gradient_weight: 0.0}\n")
    cfg = load_config(path)
    assert cfg.steps == 7 and cfg.image_size == (64, 96) and cfg.model.widths == [8, 16]
    assert cfg.data[0].count == 5 and cfg.loss.gradient_weight == 0.0
    with pytest.raises(ValueError, match="unknown config key"):
        config_from_dict({"data": [{"type": "synthetic"}], "stepz": 3})
    with pytest.raises(ValueError, match="no data"):
        config_from_dict({})
    with pytest.raises(ValueError, match="metric"):
        config_from_dict({"data": [{"type": "synthetic"}], "loss": {"target": "metric"}})
