"""A registered student's held-out numbers beside its teacher's, with the data version it was
trained on (the Train tab's "Show held-out numbers"; admins only).

The numbers are those stored in the student's ``meta.json`` under ``metrics.eval``: what
``depthweb train --eval-data``, a web run with an evaluation folder, or the loop benchmark
(``bench/bench_loop.py``: held-out streets) measured. The data version is the sha256 of the
export's ``manifest.jsonl`` the student was trained on.
"""

from __future__ import annotations

from typing import Any

from depthweb.errors import InputError
from depthweb.services.train_runs import require_admin
from depthweb.training import registry
from depthweb.training.registry import StudentRecord

HELDOUT_HEADERS = ["dataset", "student AbsRel", "teacher AbsRel", "student delta1",
                   "teacher delta1", "teacher", "data version"]
"""Columns of :func:`heldout_rows`: a student's held-out numbers beside its teacher's."""


def student_names(ctx, username: str | None) -> list[str]:
    """Every registered student, newest first (admins only)."""
    require_admin(ctx, username)
    return [r.name for r in reversed(registry.list_students(ctx.settings))]


def heldout_table(record: StudentRecord) -> list[list]:
    """Rows of :data:`HELDOUT_HEADERS` from a student's stored evaluation (``metrics.eval``:
    what ``depthweb train --eval-data``, the Train tab or the loop benchmark measured), one per
    evaluation dataset; the data version is the export's manifest sha256 (first 12 digits).
    No rows when the student was never evaluated."""
    ev = record.meta.get("metrics", {}).get("eval") or {}
    student, teacher = ev.get("student") or {}, ev.get("teacher") or {}
    version = record.data_version[:12] or "-"
    who = ev.get("teacher_model") or record.teacher or "-"
    rows = []
    for dataset in sorted(set(student) | set(teacher)):
        s, t = student.get(dataset) or {}, teacher.get(dataset) or {}
        rows.append([dataset, _metric(s.get("abs_rel")), _metric(t.get("abs_rel")),
                     _metric(s.get("delta1")), _metric(t.get("delta1")), who, version])
    return rows


def _metric(value: Any) -> float | None:
    return None if value is None else round(float(value), 4)


def heldout_rows(ctx, username: str | None, name: str) -> list[list]:
    """:func:`heldout_table` of the registered student ``name`` (admins only)."""
    require_admin(ctx, username)
    if not name:
        raise InputError("Pick a registered student first.")
    return heldout_table(registry.get_student(name, ctx.settings))
