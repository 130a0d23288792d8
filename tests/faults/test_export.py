"""Must show: ``depthweb export`` killed with SIGKILL mid-export (after a few samples), just
before it puts a finished export in place (``--overwrite``), and just after, before its row
commits: the target folder is never partial (absent, or a complete export whose manifest
sha256 matches ``export.json``), the Train tab never offers a hidden leftover, the next export
removes every leftover and records what a killed run left unrecorded, and the newest
``exports`` row of the folder always names the export in it once a run has finished. On SQLite
and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from depthweb.errors import InputError
from depthweb.services.review import export_dataset
from depthweb.services.review import session as review
from depthweb.services.review.admin import exports_root
from depthweb.services.train_runs import export_names
from depthweb.store import SYSTEM
from depthweb.store.models import Export
from tests.faults import checks, kit
from tests.review.conftest import make_tasks, scene_disparity

N_TASKS = 8
WRITER = "depthweb.services.review.exporter"
PLACER = "depthweb.services.review.export_files"


def _killed_export(ctx, db_url, tmp_path, name: str, pause: dict, overwrite: bool) -> None:
    argv = ["export", "--dataset", "exp", "-o", str(exports_root(ctx) / "exp1")]
    env = kit.child_env(ctx.settings.data_dir, db_url, pause)
    child = kit.launch(argv + (["--overwrite"] if overwrite else []), env, tmp_path / "work",
                       name)
    child.wait_paused()
    child.kill()
    assert checks.integrity_problems(db_url) == []


def _rows(ctx) -> list[tuple[str, int]]:
    with ctx.session(readonly=True) as s:
        return [(r.manifest_sha256, r.n_items) for r in s.scalars(select(Export)
                                                                   .order_by(Export.id))]


def _on_disk(target) -> str:
    assert checks.export_problems(target) == []
    import json

    return json.loads((target / "export.json").read_text())["manifest_sha256"]


@pytest.mark.slow
def test_killed_exports_never_leave_a_partial_folder(ctx, users, db_url, tmp_path):
    tasks = make_tasks(ctx, [scene_disparity(i) for i in range(N_TASKS)], dataset="exp")
    review.approve(ctx, "rev", tasks[0], 0)
    target = exports_root(ctx) / "exp1"

    # 1. killed after four samples: nothing at the target, a hidden partial folder beside it
    _killed_export(ctx, db_url, tmp_path, "mid", {"target": f"{WRITER}:_write_sample",
                                                   "nth": 4}, overwrite=False)
    assert not target.exists() and _rows(ctx) == []
    assert [n for n in checks.hidden_siblings(target) if ".tmp-" in n]
    assert export_names(ctx, "admin") == []

    # the next export cleans up and completes
    first = export_dataset(ctx, "exp", target, user=SYSTEM)
    assert checks.hidden_siblings(target) == [] and _on_disk(target) == first.manifest_sha256
    assert _rows(ctx) == [(first.manifest_sha256, N_TASKS)]

    # 2. killed before the finished replacement is swapped in: the old export stays
    review.reject(ctx, "rev", tasks[1], 0, ["sky"])
    _killed_export(ctx, db_url, tmp_path, "before", {"target": f"{PLACER}:replace_dir",
                                                      "when": "before"}, overwrite=True)
    assert _on_disk(target) == first.manifest_sha256
    assert checks.hidden_siblings(target)  # the finished but unused replacement
    assert export_names(ctx, "admin") == ["exp1"]  # never a hidden leftover
    with ctx.session(readonly=True) as s:
        assert checks.export_rows_problems(s) == []

    # 3. killed after the swap, before the row commits: the new export is complete in place
    _killed_export(ctx, db_url, tmp_path, "after", {"target": f"{PLACER}:replace_dir",
                                                     "when": "after"}, overwrite=True)
    swapped = _on_disk(target)
    assert swapped != first.manifest_sha256 and _rows(ctx) == [(first.manifest_sha256, N_TASKS)]
    with pytest.raises(InputError, match="already holds files"):
        export_dataset(ctx, "exp", target, user=SYSTEM)  # recovers the row, then refuses
    assert _rows(ctx)[-1] == (swapped, N_TASKS - 1)
    with ctx.session(readonly=True) as s:
        assert checks.export_rows_problems(s) == []

    # a re-run replaces it; no leftover, no lock file, the newest row names what is there
    review.approve(ctx, "rev", tasks[2], 0)
    last = export_dataset(ctx, "exp", target, user=SYSTEM, overwrite=True)
    assert checks.hidden_siblings(target) == [] and _on_disk(target) == last.manifest_sha256
    assert [p.name for p in target.parent.iterdir()] == ["exp1"]
    with ctx.session(readonly=True) as s:
        assert checks.export_rows_problems(s) == []
    assert checks.integrity_problems(db_url) == []
