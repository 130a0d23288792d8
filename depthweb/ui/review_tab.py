"""Review tab: the next task for the logged-in user, the photo, the teacher depth, the current
label and its 3D view, and every action (approve, reject with reasons, ignore-mask brush, scale
anchors, ordinal pairs, plane / far region fill, note).

Each save sends the task version the page shows; a stale save (someone else saved first) is
refused with a warning, the task is reloaded, and the painted mask and typed points stay on the
page. Every handler reads the user server-side (:meth:`ReviewApp.username`); the services and
the repository check the role. API endpoints: ``review_next``, ``review_open``,
``review_approve``, ``review_reject``, ``review_save_mask``, ``review_fill``,
``review_save_anchors``, ``review_save_ordinal``, ``review_note``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import gradio as gr
import numpy as np

from depthweb.config import Settings
from depthweb.services.review import session as svc
from depthweb.services.review.admin import dataset_names
from depthweb.store import StaleRevisionError
from depthweb.ui import admin_tab
from depthweb.ui.auth import ReviewApp, login_button, review_setup
from depthweb.ui.common import html_text, md_escape, user_errors
from depthweb.ui.review_view import (
    Shown,
    complete_rows,
    info_markdown,
    marked_photo,
    notes_markdown,
)

ANCHOR, PAIR = "Scale anchor", "Ordinal pair (click closer A, then farther B)"
HISTORY_HEADERS = ["version", "when", "who", "action", "details"]
ANCHOR_HEADERS = ["x (px)", "y (px)", "true depth (m)"]
PAIR_HEADERS = ["closer x", "closer y", "farther x", "farther y"]


class ReviewHandlers:
    """The tab's event handlers (one instance per app)."""

    def __init__(self, app: ReviewApp) -> None:
        self.app = app
        self.ctx = app.ctx

    def who(self, name: str | None) -> tuple[str, str | None]:
        role = svc.user_role(self.ctx, name)
        if name is None:
            text = "Not logged in" + (": sign in with Hugging Face." if self.app.oauth else ".")
        elif role is None:
            text = f"Logged in as **{md_escape(name)}** (no active account; ask an admin)."
        else:
            text = f"Logged in as **{md_escape(name)}** ({role})."
        return text, role

    def view(self, page: svc.TaskPage | None, name: str | None, empty: str = "", *,
             dataset: str | None = None, pending: tuple[int, int] | None = None) -> list:
        """Values for the view outputs (see ``build``)."""
        who, role = self.who(name)
        if page is None:
            return [None, None, empty, None, None, None, None, [], "", who,
                    Shown(0, (1, 1), np.zeros((1, 1, 3), np.uint8), dataset=dataset)]
        shown = Shown(page.task_id, page.label_shape, page.photo, pending, dataset)
        history = [[h.version, h.when, h.author, h.action, h.details] for h in page.history]
        return [page.task_id, page.version, info_markdown(page, role == "admin"),
                page.photo, page.teacher_picture, page.label_picture, page.figure, history,
                notes_markdown(page.notes), who, shown]

    @staticmethod
    def fresh_edits(page: svc.TaskPage | None) -> list:
        editor = None if page is None else {"background": page.photo, "layers": [],
                                            "composite": None}
        return [editor, [], []]

    def load_next(self, dataset, request, profile) -> list:
        name = self.app.username(request, profile)
        with user_errors("load the next task"):
            page = svc.next_page(self.ctx, name, dataset=dataset or None)
        status = ("Nothing left to review for you here: the queue is empty."
                  if page is None else f"Task {page.task_id} is yours for the next 10 minutes.")
        return [*self.view(page, name, status, dataset=dataset or None),
                *self.fresh_edits(page), status]

    def load_task(self, task_id, shown: Shown | None, request, profile) -> list:
        name = self.app.username(request, profile)
        if task_id in (None, ""):
            raise gr.Error("Type a task number, or press Next task.", print_exception=False)
        with user_errors("open the task"):
            page = svc.open_page(self.ctx, name, int(task_id))
        return [*self.view(page, name, dataset=shown.dataset if shown else None),
                *self.fresh_edits(page), f"Task {page.task_id} opened."]

    def save(self, what: str, do: Callable[[str | None], int], task_id, shown: Shown | None,
             request, profile, *, after: str = "stay") -> list:
        """Run ``do(user name)`` (returns the new version), then reload (``after="stay"``) or
        load the user's next task (``after="next"``). A stale save warns and reloads, keeping
        the painted mask and the points."""
        name = self.app.username(request, profile)
        if task_id in (None, ""):
            raise gr.Error("Open a task first (press Next task).", print_exception=False)
        ds = shown.dataset if shown is not None else None
        with user_errors(what):
            try:
                version = do(name)
            except StaleRevisionError as exc:
                gr.Warning(f"{html_text(exc)} Your mask and points are still on the page.")
                page = svc.open_page(self.ctx, name, int(task_id))
                status = (f"Not saved: task {task_id} changed meanwhile (now version "
                          f"{page.version}). It was reloaded; check it and save again.")
                keep = shown.pending if shown and shown.task_id == page.task_id else None
                return [*self.view(page, name, dataset=ds, pending=keep), gr.skip(), gr.skip(),
                        gr.skip(), status]
            done = f"Saved: {what} on task {task_id} (now version {version})."
            if after == "next":
                page = svc.next_page(self.ctx, name, dataset=ds)
                nxt = f" Next: task {page.task_id}." if page else " The queue is empty."
                return [*self.view(page, name, done + nxt, dataset=ds),
                        *self.fresh_edits(page), done + nxt]
            page = svc.open_page(self.ctx, name, int(task_id))
        return [*self.view(page, name, dataset=ds), *self.fresh_edits(page), done]


def _editor_region(value) -> np.ndarray | None:
    if not isinstance(value, dict):
        return None
    return svc.region_from_layers(value.get("layers"))


def add_review_tabs(settings: Settings) -> ReviewApp | None:
    """The Review and Admin tabs (inside a ``gr.Tabs``) when the review feature is on
    (:func:`depthweb.ui.auth.review_setup`); None and nothing added when it is off."""
    app = review_setup(settings)
    if app is None:
        return None
    with gr.Tab("Review", id="review"):
        build(app)
    with gr.Tab("Admin", id="admin", visible=False) as admin:
        admin_tab.build(app)

    def admin_only(request: gr.Request, profile: gr.OAuthProfile | None = None):
        # Cosmetic (shown to admins on load; hidden first: Gradio 6.31 does not hide a tab's
        # button later). Every admin action is checked on the server anyway.
        return gr.Tab(visible=svc.user_role(app.ctx, app.username(request, profile)) == "admin")

    gr.on(triggers=None, fn=admin_only, inputs=None, outputs=[admin], api_visibility="private")
    return app


def build(app: ReviewApp) -> None:
    """Lay out the tab and wire its events (inside a ``gr.Blocks`` context)."""
    h = ReviewHandlers(app)
    shown = gr.State(None)
    with gr.Row(equal_height=True):
        whoami = gr.Markdown(elem_id="review-whoami")
        login_button(app)
    with gr.Row(equal_height=True):
        dataset = gr.Dropdown([], value=None, label="Dataset (empty: all)", scale=2,
                              allow_custom_value=True, elem_id="review-dataset")
        next_btn = gr.Button("Next task", variant="primary", elem_id="review-next", scale=1)
        task_num = gr.Number(None, label="Task", precision=0, minimum=0, scale=1,
                             elem_id="review-task")
        version_num = gr.Number(None, label="Version", precision=0, interactive=False, scale=1,
                                elem_id="review-version")
        open_btn = gr.Button("Open / reload", elem_id="review-open", scale=1)
    status = gr.Markdown(elem_id="review-status")
    with gr.Row():
        with gr.Column(scale=2, min_width=300):
            info = gr.Markdown(elem_classes=["dw-info"], elem_id="review-info")
        with gr.Column(scale=3, min_width=300):
            notes_md = gr.Markdown(elem_id="review-notes")
    with gr.Row():
        photo = gr.Image(label="Photo: click to add anchors / pairs", interactive=False,
                         format="jpeg", height=360, elem_id="review-photo")
        teacher = gr.Image(label="Teacher depth (near = warm)", interactive=False,
                           format="jpeg", height=360, elem_id="review-teacher")
        label = gr.Image(label="Label (magenta ignored, blue far)", interactive=False,
                         format="png", height=360, elem_id="review-label")
    with gr.Row():
        with gr.Column(scale=3, min_width=400):
            editor = gr.ImageEditor(
                label="Paint a region (ignore mask or fill)", type="numpy", image_mode="RGBA",
                sources=[], transforms=[], layers=False, format="png", height=460,
                brush=gr.Brush(default_size=24, colors=["#ff00ff"], color_mode="fixed"),
                eraser=gr.Eraser(default_size=24), elem_id="review-editor")
            with gr.Row():
                mask_mode = gr.Radio(["union", "replace", "subtract"], value="union",
                                     label="Ignore mask mode", elem_id="review-mask-mode")
                save_mask = gr.Button("Save ignore mask", elem_id="review-save-mask")
            with gr.Row():
                fill_mode = gr.Radio([("plane fitted to the border", "plane"), ("far", "far")],
                                     value="plane", label="Region fill",
                                     elem_id="review-fill-mode")
                fill = gr.Button("Fill painted region", elem_id="review-fill")
        with gr.Column(scale=2, min_width=300):
            click_mode = gr.Radio([ANCHOR, PAIR], value=ANCHOR, label="Click on the photo adds",
                                  elem_id="review-click-mode")
            depth = gr.Number(None, label="True depth of the next anchor (m)", minimum=0,
                              elem_id="review-anchor-depth")
            anchors = gr.Dataframe(headers=ANCHOR_HEADERS, datatype="number", type="array",
                                   column_count=(3, "fixed"), interactive=True,
                                   label="Scale anchors (label pixels)",
                                   elem_id="review-anchors")
            save_anchors = gr.Button("Save anchors (re-fit scale and shift)",
                                     elem_id="review-save-anchors")
            pairs = gr.Dataframe(headers=PAIR_HEADERS, datatype="number", type="array",
                                 column_count=(4, "fixed"), interactive=True,
                                 label="Ordinal pairs: A is closer than B",
                                 elem_id="review-pairs")
            with gr.Row():
                save_pairs = gr.Button("Save pairs", elem_id="review-save-pairs")
                clear = gr.Button("Clear points", elem_id="review-clear")
    with gr.Row():
        reasons = gr.CheckboxGroup(list(svc.REASON_TAGS), label="Reject reasons",
                                   elem_id="review-reasons")
        note = gr.Textbox(label="Note (stored as typed)", lines=2, max_length=4000,
                          elem_id="review-note")
    with gr.Row():
        approve = gr.Button("Approve", variant="primary", elem_id="review-approve")
        reject = gr.Button("Reject", variant="stop", elem_id="review-reject")
        save_note = gr.Button("Save note", elem_id="review-save-note")
    plot = gr.Plot(label="3D view of the current label", elem_id="review-plot")
    history = gr.Dataframe(headers=HISTORY_HEADERS, datatype="str", interactive=False,
                           label="History (every action is kept)", elem_id="review-history")

    view = [task_num, version_num, info, photo, teacher, label, plot, history, notes_md,
            whoami, shown]
    components = dict(
        outputs=[*view, editor, anchors, pairs, status], task_num=task_num,
        version_num=version_num, shown=shown, whoami=whoami, dataset=dataset, status=status,
        photo=photo, editor=editor, anchors=anchors, pairs=pairs, depth=depth,
        click_mode=click_mode, mask_mode=mask_mode, fill_mode=fill_mode, reasons=reasons,
        note=note, next_btn=next_btn, open_btn=open_btn, approve=approve, reject=reject,
        save_mask=save_mask, fill=fill, save_anchors=save_anchors, save_pairs=save_pairs,
        save_note=save_note, clear=clear)
    _wire(h, app.ctx, components)


def _wire(h: ReviewHandlers, ctx, c: dict) -> None:
    """Connect the events; ``c`` holds the components made in ``build``."""
    outputs, ident, st = c["outputs"], [c["task_num"], c["version_num"]], c["shown"]
    marks = [st, c["anchors"], c["pairs"]]

    def bind(button, fn, inputs, api_name: str) -> None:
        # Progress and errors show on the status line only (not on every output), then the
        # kept anchors / pairs are drawn on the (re)loaded photo.
        button.click(fn, inputs, outputs, api_name=api_name,
                     show_progress_on=[c["status"]]).success(
            marked_photo, marks, [c["photo"]], api_visibility="private",
            show_progress="hidden")

    def on_load(request: gr.Request, profile: gr.OAuthProfile | None = None):
        name = h.app.username(request, profile)
        who, role = h.who(name)
        names = dataset_names(ctx, name) if role else []
        return who, gr.Dropdown(choices=[("all datasets", "")] + [(n, n) for n in names],
                                value="")

    gr.on(triggers=None, fn=on_load, inputs=None, outputs=[c["whoami"], c["dataset"]],
          api_visibility="private")

    def review_next(dataset, request: gr.Request, profile: gr.OAuthProfile | None = None):
        """Claim and show the next task by priority for the logged-in user."""
        return h.load_next(dataset, request, profile)

    bind(c["next_btn"], review_next, [c["dataset"]], "review_next")

    def review_open(task_id, shown: Shown | None, request: gr.Request,
                    profile: gr.OAuthProfile | None = None):
        """Show (reload) one task by number; nothing is claimed."""
        return h.load_task(task_id, shown, request, profile)

    bind(c["open_btn"], review_open, [c["task_num"], st], "review_open")

    def review_approve(task_id, version, note, shown: Shown | None,
                       request: gr.Request, profile: gr.OAuthProfile | None = None):
        """Approve the current label at ``version``; shows the next task."""
        return h.save("approve", lambda n: svc.approve(ctx, n, task_id, version, note),
                      task_id, shown, request, profile, after="next")

    bind(c["approve"], review_approve, [*ident, c["note"], st], "review_approve")

    def review_reject(task_id, version, reasons, note, shown: Shown | None,
                      request: gr.Request, profile: gr.OAuthProfile | None = None):
        """Reject the current label with reason tags; shows the next task."""
        return h.save("reject", lambda n: svc.reject(ctx, n, task_id, version, reasons, note),
                      task_id, shown, request, profile, after="next")

    bind(c["reject"], review_reject, [*ident, c["reasons"], c["note"], st], "review_reject")

    def review_save_mask(task_id, version, editor, mode, shown: Shown | None,
                         request: gr.Request, profile: gr.OAuthProfile | None = None):
        """Save the painted brush strokes as the ignore mask (union / replace / subtract)."""
        return h.save("ignore mask", lambda n: svc.save_region(
            ctx, n, task_id, version, _editor_region(editor), "mask", mode=mode or "union"),
            task_id, shown, request, profile)

    bind(c["save_mask"], review_save_mask, [*ident, c["editor"], c["mask_mode"], st],
         "review_save_mask")

    def review_fill(task_id, version, editor, mode, shown: Shown | None,
                    request: gr.Request, profile: gr.OAuthProfile | None = None):
        """Fill the painted region: ``plane`` (fitted to its border) or ``far``."""
        return h.save(f"{mode} fill", lambda n: svc.save_region(
            ctx, n, task_id, version, _editor_region(editor), mode or "plane"),
            task_id, shown, request, profile)

    bind(c["fill"], review_fill, [*ident, c["editor"], c["fill_mode"], st], "review_fill")

    def review_save_anchors(task_id, version, table, shown: Shown | None,
                            request: gr.Request, profile: gr.OAuthProfile | None = None):
        """Scale anchors [[x, y, depth_m], ...] in label pixels: re-fit scale and shift."""
        return h.save("anchors", lambda n: svc.save_anchors(ctx, n, task_id, version, table),
                      task_id, shown, request, profile)

    bind(c["save_anchors"], review_save_anchors, [*ident, c["anchors"], st],
         "review_save_anchors")

    def review_save_ordinal(task_id, version, table, shown: Shown | None,
                            request: gr.Request, profile: gr.OAuthProfile | None = None):
        """Ordinal pairs [[closer x, y, farther x, y], ...] in label pixels."""
        return h.save("ordinal pairs",
                      lambda n: svc.save_pairs(ctx, n, task_id, version, table),
                      task_id, shown, request, profile)

    bind(c["save_pairs"], review_save_ordinal, [*ident, c["pairs"], st],
         "review_save_ordinal")

    def review_note(task_id, version, text, shown: Shown | None,
                    request: gr.Request, profile: gr.OAuthProfile | None = None):
        """A free-text note on the task."""
        return h.save("note", lambda n: svc.save_note(ctx, n, task_id, version, text),
                      task_id, shown, request, profile)

    bind(c["save_note"], review_note, [*ident, c["note"], st], "review_note")
    _wire_points(c)


def _wire_points(c: dict) -> None:
    """Clicks on the photo add anchors or pairs (kept in the page until saved or cleared)."""

    def on_click(shown: Shown | None, mode, depth, anchors, pairs, evt: gr.SelectData):
        if shown is None or not shown.task_id:
            raise gr.Error("Open a task first, then click the photo.", print_exception=False)
        u, v = svc.to_label(float(evt.index[0]), float(evt.index[1]), shown.label_shape,
                            shown.photo.shape[:2])
        anchors, pairs = complete_rows(anchors, 3), complete_rows(pairs, 4)
        if mode == ANCHOR:
            if depth is None or not float(depth) > 0:
                raise gr.Error("Type the true depth of the point (in metres) first, then "
                               "click it.", print_exception=False)
            anchors.append([u, v, float(depth)])
        elif shown.pending is None:
            shown = replace(shown, pending=(u, v))
        else:
            pairs.append([*shown.pending, u, v])
            shown = replace(shown, pending=None)
        return marked_photo(shown, anchors, pairs), anchors, pairs, shown

    c["photo"].select(on_click, [c["shown"], c["click_mode"], c["depth"], c["anchors"],
                                 c["pairs"]],
                      [c["photo"], c["anchors"], c["pairs"], c["shown"]],
                      api_visibility="private")

    def on_clear(shown: Shown | None):
        shown = replace(shown, pending=None) if shown is not None else None
        return marked_photo(shown, [], []), [], [], shown

    c["clear"].click(on_clear, [c["shown"]], [c["photo"], c["anchors"], c["pairs"], c["shown"]],
                     api_visibility="private")

    for table in (c["anchors"], c["pairs"]):
        table.input(lambda shown, a, p: marked_photo(shown, a, p),
                    [c["shown"], c["anchors"], c["pairs"]], [c["photo"]],
                    api_visibility="private")
