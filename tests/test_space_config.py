"""The Space's configuration: a Python that ZeroGPU runs, the same one everywhere, code that
runs on it (checked statically: this machine only has 3.11), and a 3.10-safe ``StrEnum``."""

from __future__ import annotations

import enum
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from depthweb.compat import StrEnum

REPO = Path(__file__).resolve().parents[1]
# The Python versions ZeroGPU's documentation lists (3.11 is not among them).
ZEROGPU_PYTHONS = ("3.10.13",)


def front_matter() -> dict:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n"), "README.md must start with the Space's YAML front matter"
    return yaml.safe_load(text.split("---\n", 2)[1])


def requires_python() -> SpecifierSet:
    import tomllib  # tests run on the CI's Python; the app itself never imports tomllib

    with open(REPO / "pyproject.toml", "rb") as f:
        return SpecifierSet(tomllib.load(f)["project"]["requires-python"])


def test_the_space_runs_a_python_zerogpu_supports_and_pyproject_allows_it():
    version = str(front_matter()["python_version"])
    assert version in ZEROGPU_PYTHONS, f"python_version {version} is not one ZeroGPU runs"
    spec = requires_python()
    assert Version(version) in spec, f"requires-python {spec} excludes the Space's {version}"
    lowest = Version(version).release[:2]
    assert Version(f"{lowest[0]}.{lowest[1] - 1}.99") not in spec, "requires-python too loose"


def test_ruff_targets_the_space_python():
    import tomllib

    with open(REPO / "pyproject.toml", "rb") as f:
        target = tomllib.load(f)["tool"]["ruff"]["target-version"]
    major, minor = Version(str(front_matter()["python_version"])).release[:2]
    assert target == f"py{major}{minor}"


def test_front_matter_signs_in_with_hugging_face_and_preloads_the_default_model():
    from huggingface_hub import SpaceHardware

    from depthweb.config import Settings
    from depthweb.models.specs import SPEC_BY_NAME

    meta = front_matter()
    assert meta["hf_oauth"] is True
    assert set(meta.get("hf_oauth_scopes", [])) <= {"openid", "profile"}, "sign-in only"
    assert meta["suggested_hardware"] in {h.value for h in SpaceHardware}
    default = SPEC_BY_NAME[Settings().default_model]
    preloaded = {line.split()[0]: line.split()[1:] for line in meta["preload_from_hub"]}
    assert default.hub_id in preloaded
    files, *revision = preloaded[default.hub_id]
    assert "model.safetensors" in files.split(",")
    if default.pinned:
        assert revision == [default.revision], "preload the revision the app pins"


def test_the_static_python_310_check_passes_on_the_code_base():
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "check_py310.py")],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_static_check_names_file_and_line_of_311_only_code(tmp_path):
    bad = tmp_path / "new_code.py"
    bad.write_text("import tomllib\nfrom enum import StrEnum\n\ntry:\n    pass\n"
                   "except* ValueError:\n    pass\n")
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "check_py310.py"), str(bad)],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    for line in ("new_code.py:1:", "new_code.py:2:", "new_code.py:6:"):
        assert line in out.stdout, out.stdout


class Colour(StrEnum):
    RED = "red"
    DARK_BLUE = enum.auto()


@pytest.mark.skipif(sys.version_info < (3, 11), reason="compares with 3.11's enum.StrEnum")
def test_compat_strenum_prints_and_compares_like_the_standard_one():
    Reference = enum.StrEnum("Reference", {"RED": "red", "DARK_BLUE": enum.auto()})
    for ours, ref in zip(Colour, Reference, strict=True):
        assert (str(ours), f"{ours}", f"{ours:>12}", format(ours), ours.value) == (
            str(ref), f"{ref}", f"{ref:>12}", format(ref), ref.value)
        assert ours == ref.value and isinstance(ours, str)
        assert "%s" % ours == "%s" % ref  # noqa: UP031
        assert json.dumps(ours) == json.dumps(ref)
    assert Colour("red") is Colour.RED and Colour.DARK_BLUE == "dark_blue"
