"""``depthweb eval``: alignment in the prediction's own space, the NYU/KITTI protocols, the JSON
file and the printed table, and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from depthweb.errors import InputError
from depthweb.services.evaluation import eval_table, evaluate_backend
from depthweb.training.evaldata import load_eval_folder
from depthweb.types import DepthKind, DepthResult, Intrinsics
from tests.train_e2e.conftest import write_eval_folder

HEADER = ["model", "dataset", "frames", "AbsRel", "RMSE", "delta1", "delta2", "delta3"]


class AffineOfTruth:
    """A fake backend: an affine map (a * x + b) of the true depth or disparity of each frame,
    labelled with ``kind``."""

    name = "fake"
    weights_label = "none"

    def __init__(self, folder, space: str, kind: DepthKind) -> None:
        self.truth = {s.rgb.tobytes(): s.depth for s in load_eval_folder(folder)}
        self.space, self.kind = space, kind

    def infer_image(self, rgb: np.ndarray, intrinsics: Intrinsics | None = None) -> DepthResult:
        depth = self.truth[rgb.tobytes()].astype(np.float64)
        with np.errstate(divide="ignore"):
            x = np.where(depth > 0, 1.0 / depth, 0.0) if self.space == "disparity" else depth
        pred = (3.0 * x + 0.5).astype(np.float32)
        cam = intrinsics or Intrinsics.from_fov(rgb.shape[1], rgb.shape[0], 60.0)
        return DepthResult(depth=pred, kind=self.kind, intrinsics=cam, model="fake")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_eval_folder(tmp_path_factory.mktemp("eval") / "nyu")


@pytest.mark.parametrize(("space", "kind"), [
    ("disparity", DepthKind.RELATIVE_DISPARITY), ("depth", DepthKind.RELATIVE_DEPTH)])
def test_an_affine_map_of_the_truth_in_its_own_space_scores_perfectly(folder, space, kind):
    res = evaluate_backend(AffineOfTruth(folder, space, kind), folder)
    assert res["dataset"] == "nyu" and res["frames"] == 3 and res["crop"] == "eigen"
    assert res["mean"]["abs_rel"] < 1e-4 and res["mean"]["delta1"] == 1.0
    assert res["kind"] == str(kind)


def test_alignment_happens_in_the_space_the_model_declares(folder):
    wrong = evaluate_backend(AffineOfTruth(folder, "disparity", DepthKind.RELATIVE_DEPTH), folder)
    assert wrong["mean"]["abs_rel"] > 0.05 and wrong["mean"]["delta1"] < 1.0


def test_a_metric_prediction_is_not_aligned(folder):
    res = evaluate_backend(AffineOfTruth(folder, "depth", DepthKind.METRIC_DEPTH), folder)
    assert res["mean"]["abs_rel"] > 1.0  # 3 * depth + 0.5 m scored as it is


def test_kitti_protocol_caps_at_80_m(tmp_path):
    folder = write_eval_folder(tmp_path / "kitti_like", n=2, outdoor=True)
    res = evaluate_backend(AffineOfTruth(folder, "disparity", DepthKind.RELATIVE_DISPARITY),
                           folder, dataset="kitti")
    assert res["dataset"] == "kitti" and res["max_depth"] == 80.0 and res["crop"] == "none"


def test_eval_cli_writes_json_and_prints_a_table(tiny_run, folder, tmp_path, cli):
    out = tmp_path / "results" / "eval.json"
    code, stdout, _ = cli("eval", "-m", "depthweb-student", "--weights", tiny_run / "student",
                          "--data", folder, folder, "--baselines", "-o", out)
    assert code == 0
    report = json.loads(out.read_text())
    assert report["model"] == "depthweb-student"
    assert report["weights"] == str((tiny_run / "student").resolve())
    assert len(report["results"]) == 2
    res = report["results"][0]
    assert res["dataset"] == "nyu" and res["frames"] == 3 and res["max_depth"] == 10.0
    assert res["kind"] == "relative_disparity" and set(res["per_frame"]) == {
        "rgb_00000", "rgb_00001", "rgb_00002"}
    m = res["mean"]
    assert 0 < m["abs_rel"] < 10 and m["rmse"] > 0
    assert 0 <= m["delta1"] <= m["delta2"] <= m["delta3"] <= 1
    assert set(res["baselines"]) == {"constant", "depth_ramp", "disparity_ramp"}
    lines = stdout.strip().splitlines()
    assert lines[0].split() == HEADER and lines[-1] == f"results -> {out}"
    rows = [line.split() for line in lines[1:-1]]
    assert [r[0] for r in rows] == ["depthweb-student", "baseline:constant",
                                    "baseline:depth_ramp", "baseline:disparity_ramp"] * 2
    assert float(rows[0][3]) == pytest.approx(m["abs_rel"], abs=1e-4)
    assert float(rows[0][5]) == pytest.approx(m["delta1"], abs=1e-4)


def test_eval_table_shows_missing_values_as_na():
    report = {"model": "m", "results": [{"dataset": "nyu", "frames": 1,
                                         "mean": {"abs_rel": None, "rmse": 1.0, "delta1": 0.5,
                                                  "delta2": 0.75, "delta3": 1.0}}]}
    lines = eval_table(report).splitlines()
    assert lines[1].split() == ["m", "nyu", "1", "n/a", "1.0000", "0.5000", "0.7500", "1.0000"]


@pytest.mark.parametrize(("argv", "message"), [
    (["-m", "depthweb-student", "--data", "{tmp}/missing"], "not a readable evaluation folder"),
    (["-m", "no-such-model", "--data", "{folder}"], "Unknown model 'no-such-model'"),
])
def test_eval_errors_are_one_line(cli, tmp_path, folder, argv, message):
    argv = [a.format(tmp=tmp_path, folder=folder) for a in argv]
    code, stdout, stderr = cli("eval", *argv)
    assert code == 2 and stdout == ""
    assert stderr.startswith("error: ") and message in stderr and stderr.count("\n") == 1


def test_a_folder_without_frames_is_refused(tmp_path):
    from depthweb.services.evaluation import load_samples

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "test_annotations.json").write_text('{"files": []}')
    with pytest.raises(InputError, match="lists no frames"):
        load_samples(tmp_path / "empty")


@pytest.mark.real_data
def test_eval_reads_the_real_nyu_and_kitti_folders(tiny_run, tmp_path, cli):
    from tests.conftest import require_shared_data

    shared = require_shared_data()
    out = tmp_path / "real.json"
    code, _, err = cli("eval", "-m", "depthweb-student", "--weights", tiny_run / "student",
                       "--data", shared / "nyu", shared / "kitti", "-o", out)
    assert code == 0, err
    results = json.loads(out.read_text())["results"]
    assert [(r["dataset"], r["frames"], r["max_depth"], r["crop"]) for r in results] == [
        ("nyu", 3, 10.0, "eigen"), ("kitti", 3, 80.0, "none")]
    for r in results:
        assert 0 < r["mean"]["abs_rel"] < 5 and 0 < r["mean"]["rmse"] < r["max_depth"]
        assert all(f["n"] > 1000 for f in r["per_frame"].values())
