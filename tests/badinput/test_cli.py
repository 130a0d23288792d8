"""The corpus through the ``depthweb`` command: a bad input gives a non-zero exit and one line on
stderr naming the file and the problem (no traceback), valid siblings in the same batch are still
processed, nothing is half-written in the output folder and nothing stored changes.

Batches run as real subprocesses (``python -m depthweb``); single cases call
``depthweb.cli.main`` in-process (the same code, without the interpreter start-up).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from depthweb.cli import main
from depthweb.imaging import display_name
from tests.badinput.conftest import STUDENT
from tests.badinput.corpus import Handled, Refused, cases
from tests.badinput.corpus_review import IMPORTED_ALONGSIDE, MARKER
from tests.badinput.harness import (
    assert_sentence,
    cli_env,
    error_lines,
    lines_naming,
    no_temp_files,
    run_cli,
    store_snapshot,
)


def cli(capsys, *args) -> tuple[int, str, list[str]]:
    """``depthweb ARGS`` in-process: (exit code, stdout, stderr lines)."""
    capsys.readouterr()
    rc = main([str(a) for a in args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err.splitlines()


def _one_error(err: list[str], needle: str, name: str | None = None) -> str:
    errors = [line for line in err if line.startswith("error:")]
    assert len(errors) == 1, err
    assert not any("Traceback" in line for line in err), err
    return assert_sentence(errors[0].removeprefix("error:").strip(), needle, name=name)


def _built(all_cases, root: Path) -> dict:
    """Each case built in its own folder (so equal stems never collide)."""
    built = {}
    for case in all_cases:
        folder = root / case.id
        folder.mkdir(parents=True)
        built[case.id] = case.build(folder)
    return built


@pytest.mark.slow
def test_predict_batch_subprocess(tmp_path, good_photo):
    batch = cases(("image", "filename"), "cli")
    paths = _built(batch, tmp_path / "in")
    out = tmp_path / "out"
    proc = run_cli(["predict", *paths.values(), good_photo, "-m", STUDENT, "-o", out],
                   cli_env(DEPTHWEB_DATA_DIR=str(tmp_path / "data")))
    stderr = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 1 and "Traceback" not in stderr, stderr[-3000:]
    errors = error_lines(proc.stderr)
    for case in batch:
        path, expect = paths[case.id], case.outcome("cli")
        named = lines_naming(errors, path.name)
        stem_files = [p for p in out.glob("*") if p.name.startswith(path.stem + ".")
                      or p.name.startswith(path.stem + "_")] if out.exists() else []
        if isinstance(expect, Refused):
            assert len(named) == 1, (case.id, named)
            assert_sentence(named[0].removeprefix("error:").strip(), expect.needle)
            assert stem_files == [], (case.id, stem_files)  # nothing half-written
        else:
            assert named == [], (case.id, named)
            depth = np.load(out / f"{path.stem}.npy")
            assert depth.shape == expect.shape, case.id
            assert json.loads((out / f"{path.stem}.json").read_text())["height"] == \
                expect.shape[0]
    assert len(errors) == sum(isinstance(c.outcome("cli"), Refused) for c in batch)
    assert np.load(out / "good.npy").shape == (48, 64)  # the valid sibling still ran
    assert display_name(paths["name-non-utf8"].name) in proc.stdout.decode()
    no_temp_files(out)


@pytest.mark.parametrize("case", cases(("stereo", "calib"), "cli"), ids=repr)
def test_stereo(case, tmp_path, capsys, settings):
    inputs = case.build(tmp_path)
    out = tmp_path / "out"
    rc, _, err = cli(capsys, "stereo", inputs["left"], inputs["right"], "--calib",
                     inputs["calib"], "-o", out)
    expect = case.outcome("cli")
    if isinstance(expect, Refused):
        assert rc == 2, (rc, err)
        _one_error(err, expect.needle)
        assert not out.exists() or list(out.iterdir()) == []
        return
    assert rc == 0, err
    assert np.load(out / "left.npy").shape == expect.shape
    assert np.load(out / "left_disparity.npy").shape == expect.shape
    no_temp_files(out)


@pytest.mark.parametrize("args,needle", [
    (["--focal-px", "nan", "--baseline-m", "0.1"], "focal length must be a positive"),
    (["--focal-px", "500", "--baseline-m", "-0.1"], "baseline must be a positive"),
    (["--focal-px", "500", "--baseline-m", "0.1", "--doffs", "inf"], "finite"),
    (["--focal-px", "500"], "needs --baseline-m"),
])
def test_stereo_numbers(args, needle, tmp_path, capsys, settings):
    pair = next(c for c in cases("stereo", "cli") if c.id == "stereo-gray-and-rgb")
    inputs = pair.build(tmp_path)  # a valid pair
    rc, _, err = cli(capsys, "stereo", inputs["left"], inputs["right"], *args, "-o",
                     tmp_path / "out")
    assert rc == 2
    _one_error(err, needle)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_stereo_subprocess_says_one_line(tmp_path):
    case = next(c for c in cases("calib", "cli") if c.id == "calib-absurd-ndisp")
    inputs = case.build(tmp_path)
    proc = run_cli(["stereo", inputs["left"], inputs["right"], "--calib", inputs["calib"],
                    "-o", tmp_path / "out"], cli_env(DEPTHWEB_DATA_DIR=str(tmp_path / "d")))
    stderr = proc.stderr.decode()
    assert proc.returncode == 2 and stderr.count("\n") == 1, stderr
    assert_sentence(stderr.removeprefix("error:").strip(), "ndisp", name="calib.txt")


@pytest.mark.slow
def test_import_batch_subprocess(tmp_path, store_dir):
    """Every bad image in one ``depthweb import``: one line each, the good ones imported."""
    from depthweb.config import Settings
    from depthweb.services.review import ReviewContext

    data = tmp_path / "data"
    shutil.copytree(store_dir, data)
    batch = cases(("image", "filename"), "cli")
    paths = _built([c for c in batch if c.id != "folder-as-image"], tmp_path / "in")
    proc = run_cli(["import", *paths.values(), "--dataset", "batch"],
                   cli_env(DEPTHWEB_DATA_DIR=str(data)))
    stderr = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 1 and "Traceback" not in stderr, stderr[-3000:]
    errors = error_lines(proc.stderr)
    refused = [c for c in batch if c.id in paths and isinstance(c.outcome("import"), Refused)]
    for case in refused:
        named = lines_naming(errors, paths[case.id].name)
        assert len(named) == 1, (case.id, errors)
        assert_sentence(named[0].removeprefix("error:").strip(), case.outcome("import").needle)
    assert len(errors) == len(refused)
    settings = Settings(data_dir=data, device="cpu")
    with ReviewContext.from_settings(settings) as ctx, ctx.session(readonly=True) as s:
        from depthweb.store.models import Dataset, Image

        names = {i.original_filename for i in s.query(Image).join(Dataset).filter(
            Dataset.name == "batch")}
    assert "caf\ufffd.png" in names and "写真 ü €.png" in names
    assert len(names) == len(paths) - len(refused)


@pytest.mark.parametrize("case", cases(("archive", "dataset-name"), "cli"), ids=repr)
def test_import(case, tmp_path, capsys, ctx, good_photo):
    built = case.build(tmp_path)
    source, dataset = (good_photo, built) if case.kind == "dataset-name" else (built, "scenes")
    before = store_snapshot(ctx)
    rc, stdout, err = cli(capsys, "import", source, "--dataset", dataset)
    expect = case.outcome("cli")
    if isinstance(expect, Handled):
        assert rc == 0 and "0 unreadable" in stdout, (stdout, err)
        return
    assert rc in (1, 2), err
    assert not any("Traceback" in line for line in err)
    errors = [line for line in err if line.startswith("error:")]
    assert errors and all(expect.needle.lower() in e.lower() for e in errors), err
    if case.id not in IMPORTED_ALONGSIDE:
        assert store_snapshot(ctx) == before


@pytest.mark.parametrize("case", cases("depth", "cli"), ids=repr)
def test_import_depth(case, tmp_path, capsys, ctx):
    path = case.build(tmp_path)
    before = store_snapshot(ctx)
    rc, stdout, err = cli(capsys, "import-depth", path, "--dataset", "gt")
    assert not (tmp_path / MARKER).exists(), "a pickle was loaded"
    expect = case.outcome("cli")
    if isinstance(expect, Refused):
        assert rc == 1 and "0 ground-truth maps added" in stdout, (stdout, err)
        _one_error(err, expect.needle, name=path.name)
        assert store_snapshot(ctx) == before
        return
    assert rc == 0 and re.search(r"[01] ground-truth maps added, [01] unchanged", stdout), err


@pytest.mark.slow
def test_import_depth_batch_subprocess(tmp_path, store_dir):
    data = tmp_path / "data"
    shutil.copytree(store_dir, data)
    batch = [c for c in cases("depth", "cli") if c.id != "gt-unmatched-name"]
    paths = _built(batch, tmp_path / "in")
    proc = run_cli(["import-depth", *paths.values(), "--dataset", "gt"],
                   cli_env(DEPTHWEB_DATA_DIR=str(data)))
    stderr = proc.stderr.decode()
    assert proc.returncode == 1 and "Traceback" not in stderr, stderr
    errors = error_lines(proc.stderr)
    refused = [c for c in batch if isinstance(c.outcome("cli"), Refused)]
    assert len(errors) == len(refused), errors
    added, unchanged = map(int, re.search(r"(\d+) ground-truth maps added, (\d+) unchanged",
                                          proc.stdout.decode()).groups())
    assert added + unchanged == len(batch) - len(refused)  # a copy may hold them already
    assert not list(tmp_path.rglob(MARKER))


@pytest.mark.parametrize("case", cases("eval", "cli"), ids=repr)
def test_eval(case, tmp_path, capsys, settings):
    folder = case.build(tmp_path)
    out = tmp_path / "results.json"
    rc, _, err = cli(capsys, "eval", "-m", STUDENT, "--data", folder, "-o", out)
    expect = case.outcome("cli")
    if isinstance(expect, Refused):
        assert rc == 2
        _one_error(err, expect.needle)
        assert not out.exists()
        return
    assert rc == 0, err
    assert json.loads(out.read_text())["results"][0]["frames"] == 1


def _export_target(value: str, tmp_path: Path, ctx) -> Path | str:
    if value == "<data>/blobs/x":
        return Path(ctx.store.root) / "x"
    if value == "<file>":
        (tmp_path / "a-file").write_text("x")
        return tmp_path / "a-file"
    if value == "<full>":
        (tmp_path / "full").mkdir()
        (tmp_path / "full" / "keep.txt").write_text("mine")
        return tmp_path / "full"
    return value


@pytest.mark.parametrize("case", cases("export-path", "cli"), ids=repr)
def test_export(case, tmp_path, capsys, ctx, monkeypatch):
    work = tmp_path / "work" / "here"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    target = _export_target(case.build(tmp_path), tmp_path, ctx)
    before = store_snapshot(ctx)
    rc, _, err = cli(capsys, "export", "--dataset", "scenes", "-o", target)
    expect = case.outcome("cli")
    if isinstance(expect, Refused):
        assert rc == 2
        _one_error(err, expect.needle)
        assert store_snapshot(ctx) == before
        if str(target).endswith("full"):
            assert [p.name for p in Path(target).iterdir()] == ["keep.txt"]
        return
    assert rc == 0, err
    assert ((work / str(target)).resolve() / "manifest.jsonl").is_file()
