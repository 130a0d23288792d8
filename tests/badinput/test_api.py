"""The corpus through the Python API: every bad input raises a ``DepthwebError`` (never a raw
PIL / numpy / cv2 / OS error) with one sentence, and changes nothing stored; every input the
corpus calls handled gives the output it describes."""

from __future__ import annotations

import numpy as np
import pytest

from depthweb.errors import DepthwebError, InputError
from depthweb.imaging import load_image
from tests.badinput.conftest import STUDENT, first_task
from tests.badinput.corpus import Handled, Refused, cases
from tests.badinput.corpus_review import IMPORTED_ALONGSIDE, MARKER
from tests.badinput.harness import assert_sentence, store_snapshot


def _refused(out, exc: BaseException, name: str | None = None) -> None:
    assert isinstance(out, Refused), f"expected it handled, got {exc!r}"
    assert isinstance(exc, DepthwebError), f"raw {type(exc).__name__} leaked: {exc}"
    assert_sentence(exc, out.needle, name=name)


def _attempt(fn):
    try:
        return fn(), None
    except Exception as exc:  # the point is to see what leaks
        return None, exc


@pytest.mark.parametrize("case", cases(("image", "filename"), "api"), ids=repr)
def test_decode_and_predict(case, tmp_path):
    from depthweb.services.predict import predict_image

    path = case.build(tmp_path)
    out = case.outcome("api")
    loaded, exc = _attempt(lambda: load_image(path))
    if exc is not None:
        _refused(out, exc, name=path.name)
        _, again = _attempt(lambda: predict_image(path, STUDENT))
        _refused(out, again, name=path.name)
        return
    assert isinstance(out, Handled), f"{case.id} was decoded but should be refused"
    assert loaded.rgb.shape == (*out.shape, 3) and loaded.rgb.dtype == np.uint8
    if out.check:
        out.check(loaded.rgb)
    result = predict_image(path, STUDENT, device="cpu")
    assert result.depth.shape == out.shape and np.isfinite(result.depth).all()


@pytest.mark.parametrize("case", cases(("image", "filename"), "api"), ids=repr)
def test_import_images(case, tmp_path, ctx):
    from depthweb.services.review import import_images
    from depthweb.services.review.importer import stored_name
    from depthweb.store import SYSTEM
    from depthweb.store.models import Image

    path = case.build(tmp_path)
    before = store_snapshot(ctx)
    report, exc = _attempt(lambda: import_images(ctx, [path], dataset="scenes", user=SYSTEM))
    out = case.outcome("import")
    if exc is not None:
        _refused(out, exc)
        assert store_snapshot(ctx) == before
        return
    if isinstance(out, Refused):
        assert report.added == 0 and len(report.failed) == 1, report.summary()
        assert_sentence(report.failed[0][1], out.needle, name=path.name)
        assert store_snapshot(ctx) == before
        return
    assert report.failed == [] and report.added + report.duplicates == 1
    with ctx.session(readonly=True) as s:
        image = s.query(Image).filter_by(original_filename=stored_name(path.name)).one()
        assert (image.height, image.width) == out.shape


def test_stored_images_open_whatever_their_aspect_ratio(tmp_path):
    """The review page opens images stored before the aspect limit existed."""
    from tests.badinput.corpus import encode, photo

    data = encode(photo(70, 2, 400), "PNG")
    with pytest.raises(InputError, match="aspect ratio"):
        load_image(data)
    assert load_image(data, max_aspect=None).rgb.shape == (2, 400, 3)


@pytest.mark.parametrize("shape", [(1, 20000, 3), (400, 2, 3), (10, 10, 4), (8, 8)])
def test_arrays_given_to_the_api_get_the_same_checks(shape):
    from depthweb.services.predict import predict_image

    arr = np.zeros(shape, np.uint8)
    with pytest.raises(InputError) as err:
        predict_image(arr, STUDENT)
    assert_sentence(err.value, "aspect ratio" if shape[-1] == 3 else "RGB uint8")


def _stereo(inputs, settings, out_dir, mono: str | None = None):
    from depthweb.services.predict import predict_images
    from depthweb.services.stereo_service import calibration, run_stereo

    calib = calibration(inputs["calib"], 60.0, 0.1, 0.0)
    return run_stereo(inputs["left"], inputs["right"], calib, settings, out_dir,
                      mono_model=mono, predict_fn=predict_images)


@pytest.mark.parametrize("case", cases(("stereo", "calib"), "api"), ids=repr)
def test_stereo(case, tmp_path, settings):
    inputs = case.build(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result, exc = _attempt(lambda: _stereo(inputs, settings, out_dir))
    out = case.outcome("api")
    if exc is not None:
        _refused(out, exc)
        assert list(out_dir.iterdir()) == []
        return
    assert isinstance(out, Handled), f"{case.id} should be refused"
    assert result.stereo.depth.shape == out.shape
    assert np.load(out_dir / "left_disparity.npy").shape == out.shape


@pytest.mark.parametrize("case", cases("depth", "api"), ids=repr)
def test_ground_truth_import(case, tmp_path, ctx):
    from depthweb.services.review.groundtruth import import_ground_truth
    from depthweb.services.review.labels import GROUND_TRUTH_MODEL
    from depthweb.store import SYSTEM, BlobRef
    from depthweb.store.models import Prediction

    path = case.build(tmp_path)
    before = store_snapshot(ctx)
    report = import_ground_truth(ctx, [path], dataset="gt", user=SYSTEM)
    assert not (tmp_path / MARKER).exists(), "a pickle was loaded"
    out = case.outcome("api")
    if isinstance(out, Refused):
        assert report.added == 0 and [n for n, _ in report.failed] == [path.name]
        assert_sentence(report.failed[0][1], out.needle, name=path.name)
        assert store_snapshot(ctx) == before
        return
    assert report.failed == [] and report.added + report.unchanged == 1, report.summary()
    with ctx.session(readonly=True) as s:
        pred = s.query(Prediction).filter_by(model=GROUND_TRUTH_MODEL).order_by(
            Prediction.id.desc()).first()
        stored = ctx.store.get_array(BlobRef.from_row(pred.depth_blob))
        assert pred.kind == "metric_depth" and pred.weights == pred.depth_blob.sha256
    assert report.added == 1 and stored.shape == out.shape
    out.check(stored)


def test_ground_truth_is_exported_as_ground_truth(tmp_path, ctx):
    import json

    from PIL import Image

    from depthweb.services.review import export_dataset, import_images
    from depthweb.services.review.groundtruth import import_ground_truth
    from depthweb.store import SYSTEM
    from tests.badinput.corpus import photo
    from tests.badinput.corpus_review import DEPTH_CASES, GT_H, GT_IMAGE, GT_W

    Image.fromarray(photo(111, GT_H, GT_W)).save(tmp_path / GT_IMAGE)
    assert import_images(ctx, [tmp_path / GT_IMAGE], dataset="gt-export", user=SYSTEM).added
    path = DEPTH_CASES[0].build(tmp_path)  # NaN patch
    done = import_ground_truth(ctx, [path], dataset="gt-export", user=SYSTEM)
    assert (done.added, done.kept, done.failed) == (1, [], [])
    report = export_dataset(ctx, "gt-export", tmp_path / "export", user=SYSTEM)
    rows = [json.loads(x) for x in (report.path / "manifest.jsonl").read_text().splitlines()]
    assert [(r["source"], r["kind"], r["weight"]) for r in rows] == [
        ("ground_truth", "metric_depth", 1.0)]
    label = np.load(report.path / rows[0]["label"])
    DEPTH_CASES[0].expect.check(label)


@pytest.mark.parametrize("case", cases("eval", "api"), ids=repr)
def test_evaluation_folders(case, tmp_path):
    from depthweb.services.evaluation import evaluate_model

    folder = case.build(tmp_path)
    report, exc = _attempt(lambda: evaluate_model(STUDENT, [folder], device="cpu"))
    out = case.outcome("api")
    if exc is not None:
        _refused(out, exc)
        return
    assert isinstance(out, Handled), f"{case.id} should be refused"
    mean = report["results"][0]["mean"]
    assert report["results"][0]["frames"] == 1 and 0 <= mean["abs_rel"] < 10


@pytest.mark.parametrize("case", cases("anchors", "api"), ids=repr)
def test_studio_anchors(case, tmp_path, good_photo):
    from depthweb.config import Settings
    from depthweb.services import studio

    text = case.build(tmp_path)
    settings = Settings(output_dir=tmp_path, device="cpu")
    state = studio.run_prediction(good_photo, STUDENT, studio.CameraHint(), settings)
    aligned, exc = _attempt(lambda: studio.align(state, studio.parse_anchors(text)))
    out = case.outcome("api")
    if exc is not None:
        _refused(out, exc)
        return
    assert isinstance(out, Handled), f"{case.id} should be refused"
    assert aligned.current.kind == "metric_depth"
    assert abs(float(aligned.current.depth[30, 20]) - 2.5) < 1e-3


@pytest.mark.parametrize("case", cases("review-anchors", "api"), ids=repr)
def test_review_anchors(case, tmp_path, ctx):
    from depthweb.services.review import session

    task_id, version = first_task(ctx)
    before = store_snapshot(ctx)
    new, exc = _attempt(lambda: session.save_anchors(ctx, "rev", task_id, version,
                                                     case.build(tmp_path)))
    out = case.outcome("api")
    if exc is not None:
        _refused(out, exc)
        assert store_snapshot(ctx) == before
        return
    assert isinstance(out, Handled) and new == version + 1


@pytest.mark.parametrize("case", cases(("note", "approve-note"), "api"), ids=repr)
def test_notes(case, tmp_path, ctx):
    from depthweb.services.review import session
    from depthweb.store.models import Revision

    text = case.build(tmp_path)
    task_id, version = first_task(ctx)
    before = store_snapshot(ctx)
    save = session.save_note if case.kind == "note" else session.approve
    new, exc = _attempt(lambda: save(ctx, "rev", task_id, version, text))
    out = case.outcome("api")
    if exc is not None:
        _refused(out, exc)
        assert store_snapshot(ctx) == before
        return
    assert isinstance(out, Handled)
    with ctx.session(readonly=True) as s:
        rev = s.query(Revision).filter_by(task_id=task_id, task_version=new).one()
        assert rev.payload["text"] == text  # verbatim: no escaping, no cutting


@pytest.mark.parametrize("case", cases("export-path", "api"), ids=repr)
def test_export_names(case, tmp_path, ctx):
    from depthweb.services.review import admin

    name = case.build(tmp_path)
    before = store_snapshot(ctx)
    report, exc = _attempt(lambda: admin.run_export(ctx, "boss", "scenes", name))
    out = case.outcome("api")
    if exc is not None:
        _refused(out, exc)
        assert store_snapshot(ctx) == before
        assert not (tmp_path.parent / "outside").exists()
        return
    assert isinstance(out, Handled) and report.count == 2
    assert report.path.parent == admin.exports_root(ctx).resolve()


@pytest.mark.parametrize("case", cases(("dataset-name", "archive"), "api"), ids=repr)
def test_imports(case, tmp_path, ctx, good_photo):
    from depthweb.services.review import import_images
    from depthweb.store import SYSTEM
    from depthweb.store.models import Dataset, Image

    built = case.build(tmp_path)
    source, dataset = (good_photo, built) if case.kind == "dataset-name" else (built, "scenes")
    before = store_snapshot(ctx)
    report, exc = _attempt(lambda: import_images(ctx, [source], dataset=dataset, user=SYSTEM))
    out = case.outcome("api")
    if exc is not None:
        _refused(out, exc)
        assert store_snapshot(ctx) == before
        return
    with ctx.session(readonly=True) as s:
        names = {i.original_filename for i in s.query(Image).join(Dataset).filter(
            Dataset.name == report.dataset)}
    if isinstance(out, Refused):  # some members refused, reported one sentence each
        assert report.failed, report.summary()
        for _, reason in report.failed:
            assert_sentence(reason, out.needle)
        assert any(n.endswith(IMPORTED_ALONGSIDE[case.id]) for n in names)
        assert not list(tmp_path.parent.rglob("evil*.png"))  # nothing was ever extracted
        return
    assert report.dataset == dataset and report.failed == []
