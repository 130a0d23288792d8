"""What the Review tab shows of a task: the task on the page (:class:`Shown`), its info and
notes as escaped Markdown, and the photo marked with the typed anchors and ordinal points."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from depthweb.services import visuals
from depthweb.services.review import session as svc
from depthweb.ui.common import md_escape


@dataclass(frozen=True)
class Shown:
    """The task on the page: its label shape, the display photo (h, w, 3), a pending ordinal
    point A (label pixels) waiting for its B, and the dataset the user picked for Next."""

    task_id: int
    label_shape: tuple[int, int]
    photo: np.ndarray
    pending: tuple[int, int] | None = None
    dataset: str | None = None


def info_markdown(page: svc.TaskPage, show_gold: bool) -> str:
    claimed = f" (claimed by {md_escape(page.assignee)})" if page.assignee else ""
    unc = "n/a" if page.uncertainty is None else f"{page.uncertainty:.4f}"
    gold = " · **gold task**" if show_gold and page.is_gold else ""
    rows = [
        ("Task", f"{page.task_id} · version {page.version}{gold}"),
        ("Status", f"{page.status}{claimed}"),
        ("Priority · uncertainty", f"{page.priority:.4f} · {unc}"),
        ("Image", md_escape(page.image_name or "?")),
        ("Teacher", md_escape(f"{page.teacher} {page.teacher_weights}".strip())),
        ("Label", f"{page.kind} · {page.source} · {page.n_corrections} correction(s) · "
                  f"{page.label_shape[1]}x{page.label_shape[0]} px"),
    ]
    (k0, v0), rest = rows[0], rows[1:]
    return f"| {k0} | {v0} |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rest)


def notes_markdown(notes: list[tuple[str, str]]) -> str:
    if not notes:
        return ""
    lines = [f"- **{md_escape(who)}**: {md_escape(text).replace(chr(10), '<br>')}"
             for who, text in notes[-20:]]
    return "**Notes**\n\n" + "\n".join(lines)


def marked_photo(shown: Shown | None, anchors, pairs) -> np.ndarray | None:
    """The display photo with anchors (cyan, numbered) and the pending or last pair (A/B)."""
    if shown is None or not shown.task_id:
        return None
    dshape = shown.photo.shape[:2]

    def disp(u, v):
        return svc.to_display(float(u), float(v), shown.label_shape, dshape)

    anchor_pts = [disp(r[0], r[1]) for r in complete_rows(anchors, 3)]
    pair_rows = complete_rows(pairs, 4)
    if shown.pending is not None:
        measure = [disp(*shown.pending)]
    elif pair_rows:
        measure = [disp(pair_rows[-1][0], pair_rows[-1][1]),
                   disp(pair_rows[-1][2], pair_rows[-1][3])]
    else:
        measure = []
    return visuals.mark_points(shown.photo, measure, anchor_pts)


def complete_rows(table, width: int) -> list[list]:
    """Complete numeric rows of a Dataframe value (type="array")."""
    out = []
    for row in table or []:
        cells = list(row or [])[:width]
        if len(cells) == width and all(c not in (None, "") for c in cells):
            out.append(cells)
    return out
