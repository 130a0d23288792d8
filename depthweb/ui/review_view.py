"""What the Review tab shows of a task: the task on the page (:class:`Shown`), its info and
notes as escaped Markdown, and the photo marked with the typed anchors and ordinal points."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace

import gradio as gr
import numpy as np

from depthweb.services import visuals
from depthweb.services.review import LIMITS
from depthweb.services.review import session as svc
from depthweb.ui.common import md_escape

SHORTCUTS = {"a": "review-approve", "r": "review-reject", "n": "review-next", "u": "review-undo"}
SHORTCUTS_TEXT = ("**Keyboard:** `A` approve · `R` reject (pick a reason first) · `N` next task "
                  "· `U` undo your last correction (not while typing in a field)")
SHORTCUTS_JS = """() => {
  if (window.__dwReviewKeys) return;
  window.__dwReviewKeys = true;
  const keys = __KEYS__;
  document.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    const t = e.target;
    const tag = (t && t.tagName || '').toLowerCase();
    if (tag === 'input' || tag === 'textarea' || tag === 'select' || (t && t.isContentEditable))
      return;
    const id = keys[e.key.toLowerCase()];
    const btn = id && document.getElementById(id);
    if (btn && btn.offsetParent !== null) { e.preventDefault(); btn.click(); }
  });
}""".replace("__KEYS__", json.dumps(SHORTCUTS))


def limits_markdown() -> str:
    """The correction limits, as stated on the page (saves beyond them are refused)."""
    lim = LIMITS
    return (f"Limits: {lim['pairs_per_save']} pairs and {lim['anchors_per_save']} anchors per "
            f"save; per task {lim['pairs_per_task']} pairs, {lim['anchors_per_task']} anchors, "
            f"{lim['regions_per_task']} painted regions, {lim['corrections_per_task']} "
            "corrections in all.")


@dataclass(frozen=True)
class Shown:
    """The task on the page: its label shape, the display photo (h, w, 3), a pending ordinal
    point A (label pixels) waiting for its B, and the dataset the user picked for Next.

    ``anchors`` / ``pairs``: the rows of the two tables as the server last wrote or received
    them (None: not known yet, read the tables). Clicks are processed one after the other
    against these, so two quick clicks both count: the second click's table values, sent by
    the browser before the first click's answer arrived, would miss the first point."""

    task_id: int
    label_shape: tuple[int, int]
    photo: np.ndarray
    pending: tuple[int, int] | None = None
    dataset: str | None = None
    anchors: tuple[tuple[float, ...], ...] | None = None
    pairs: tuple[tuple[float, ...], ...] | None = None
    photo_file: str = ""

    def with_points(self, anchors, pairs) -> Shown:
        return replace(self, anchors=tuple(tuple(r) for r in anchors),
                       pairs=tuple(tuple(r) for r in pairs))


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


def marked_photo(shown: Shown | None, anchors, pairs) -> np.ndarray | str | None:
    """The display photo with anchors (cyan, numbered) and the pending or last pair (A/B);
    with no marks, the photo's encoded file as the page got it (nothing encoded again)."""
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
    if not measure and not anchor_pts and shown.photo_file and os.path.isfile(shown.photo_file):
        return shown.photo_file
    return visuals.mark_points(shown.photo, measure, anchor_pts)


def complete_rows(table, width: int) -> list[list]:
    """Complete numeric rows of a Dataframe value (type="array")."""
    out = []
    for row in table or []:
        cells = list(row or [])[:width]
        if len(cells) == width and all(c not in (None, "") for c in cells):
            out.append(cells)
    return out


def wire_points(c: dict, anchor_mode: str) -> None:
    """Clicks on the photo add anchors or pairs (kept in the page until saved or cleared)."""

    def on_click(shown: Shown | None, mode, depth, anchors, pairs, evt: gr.SelectData):
        if shown is None or not shown.task_id:
            raise gr.Error("Open a task first, then click the photo.", print_exception=False)
        u, v = svc.to_label(float(evt.index[0]), float(evt.index[1]), shown.label_shape,
                            shown.photo.shape[:2])
        anchors = [list(r) for r in shown.anchors] if shown.anchors is not None else \
            complete_rows(anchors, 3)
        pairs = [list(r) for r in shown.pairs] if shown.pairs is not None else \
            complete_rows(pairs, 4)
        if mode == anchor_mode:
            if depth is None or not float(depth) > 0:
                raise gr.Error("Type the true depth of the point (in metres) first, then "
                               "click it.", print_exception=False)
            anchors.append([u, v, float(depth)])
        elif shown.pending is None:
            shown = replace(shown, pending=(u, v))
        else:
            pairs.append([*shown.pending, u, v])
            shown = replace(shown, pending=None)
        shown = shown.with_points(anchors, pairs)
        return marked_photo(shown, anchors, pairs), anchors, pairs, shown

    # "multiple": a click while the previous one is answered is queued, not dropped (Gradio's
    # default "once" ignores it), and runs after it against the state it left (Shown); no
    # progress overlay, which would cover the photo and swallow that click.
    c["photo"].select(on_click, [c["shown"], c["click_mode"], c["depth"], c["anchors"],
                                 c["pairs"]],
                      [c["photo"], c["anchors"], c["pairs"], c["shown"]],
                      api_visibility="private", trigger_mode="multiple", show_progress="hidden")

    def on_clear(shown: Shown | None):
        shown = replace(shown, pending=None).with_points([], []) if shown is not None else None
        return marked_photo(shown, [], []), [], [], shown

    c["clear"].click(on_clear, [c["shown"]], [c["photo"], c["anchors"], c["pairs"], c["shown"]],
                     api_visibility="private")

    def on_edit(shown: Shown | None, anchors, pairs):
        """The user typed in a table: it is what counts from now on."""
        anchors, pairs = complete_rows(anchors, 3), complete_rows(pairs, 4)
        shown = shown.with_points(anchors, pairs) if shown is not None else None
        return marked_photo(shown, anchors, pairs), shown

    for table in (c["anchors"], c["pairs"]):
        table.input(on_edit, [c["shown"], c["anchors"], c["pairs"]], [c["photo"], c["shown"]],
                    api_visibility="private")
