"""A clone without ``../shared/data`` leaves out exactly the real-data tests, in one line.

Runs pytest on a small project that uses this repository's ``tests/conftest.py``, once without
and once with the data folder beside it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SAMPLE = '''
import pytest
from conftest import real_data_fixture


@pytest.fixture
@real_data_fixture
def frames(shared_data):
    return shared_data


def test_generated():
    assert True


@pytest.mark.real_data
def test_marked():
    assert True


def test_uses_shared_data(shared_data):
    assert shared_data.is_dir()


def test_uses_a_fixture_that_reads_it(frames):
    assert frames.is_dir()
'''


def run_pytest(project: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(project / "tests")])}
    env.pop("CI", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs",
         "--strict-markers", "-o", "markers=real_data: needs ../shared/data",
         "--rootdir", str(project), str(project / "tests")],
        cwd=project, env=env, capture_output=True, text=True, timeout=600)


def test_without_the_folder_only_real_data_tests_are_left_out_in_one_line(tmp_path):
    project = tmp_path / "clone" / "repo"
    (project / "tests").mkdir(parents=True)
    shutil.copy(REPO / "tests" / "conftest.py", project / "tests" / "conftest.py")
    (project / "tests" / "test_sample.py").write_text(SAMPLE)
    folder = tmp_path / "clone" / "shared" / "data"

    out = run_pytest(project)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = [ln for ln in out.stdout.splitlines() if "real-data" in ln]
    assert lines == [f"SKIPPED 3 real-data tests: {folder} is absent (licensed NYU, KITTI, "
                     f"Middlebury and demo files; see its MANIFEST.md)"], out.stdout
    assert "1 passed, 3 deselected" in out.stdout

    folder.mkdir(parents=True)
    out = run_pytest(project)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "4 passed" in out.stdout
    assert "real-data" not in out.stdout and "skipped" not in out.stdout
