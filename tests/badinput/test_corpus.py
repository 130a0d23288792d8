"""The corpus itself: big enough, unique ids, seeded (the same bytes every time), every case sent
through at least one surface, and every kind has inputs that must be refused."""

from __future__ import annotations

import collections
from pathlib import Path

from tests.badinput.corpus import SURFACES, Refused, all_cases

KINDS_BY_SURFACE = {
    "api": {"image", "filename", "stereo", "calib", "depth", "eval", "anchors",
            "review-anchors", "note", "approve-note", "export-path", "dataset-name", "archive"},
    "cli": {"image", "filename", "stereo", "calib", "depth", "eval", "export-path",
            "dataset-name", "archive"},
    "web": {"image", "filename", "stereo", "calib", "anchors", "review-anchors", "note",
            "approve-note", "export-path", "dataset-name", "archive"},
}
"""What each test module sends through each surface (test_api, test_cli, test_web_*)."""


def test_the_corpus_is_large_and_its_ids_are_unique():
    cases = all_cases()
    assert len(cases) >= 30
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)), [i for i, n in collections.Counter(ids).items() if n > 1]
    assert sum(isinstance(c.expect, Refused) for c in cases) >= 30


def test_every_case_runs_somewhere_and_every_kind_has_refusals():
    for case in all_cases():
        assert case.surfaces <= SURFACES, case.id
        ran = [s for s in case.surfaces if case.kind in KINDS_BY_SURFACE[s]]
        assert ran, f"{case.id} is sent through no surface"
        for outcome in [case.expect, *case.overrides.values()]:
            assert not isinstance(outcome, Refused) or outcome.needle.strip(), case.id
    kinds = {c.kind for c in all_cases() if isinstance(c.expect, Refused)}
    assert kinds >= set().union(*KINDS_BY_SURFACE.values()) - {"filename"}


def _digest(value) -> object:
    if isinstance(value, dict):
        return {k: _digest(v) for k, v in value.items()}
    if isinstance(value, Path):
        if value.is_dir():
            return sorted((str(p.relative_to(value)), p.read_bytes() if p.is_file() else b"")
                          for p in value.rglob("*"))
        return (value.name, value.read_bytes() if value.exists() else None)
    return value


def test_the_builders_are_seeded(tmp_path):
    for case in all_cases():
        a, b = tmp_path / case.id / "a", tmp_path / case.id / "b"
        a.mkdir(parents=True)
        b.mkdir()
        first, second = _digest(case.build(a)), _digest(case.build(b))
        if case.id != "gt-object-pickle":  # pickles embed the (different) folder path
            assert first == second, case.id
