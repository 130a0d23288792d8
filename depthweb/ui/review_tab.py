"""Review tab: the next task for the logged-in user, the photo, the teacher depth, the current
label and its 3D view, and every action (approve, reject with reasons, ignore-mask brush, scale
anchors, ordinal pairs, plane / far region fill, note).

Each save sends the task version the page shows and is one service call that returns the page
to show next; a stale save (someone else saved first) is refused with a warning, the task is
reloaded, and the painted mask and typed points stay on the page. The 3D view is built only
when "Show 3D view" is pressed. Keyboard shortcuts (shown on the page): A approve, R reject,
N next task, U undo. Every handler reads the user server-side (:meth:`ReviewApp.username`);
the services and the repository check the role. API endpoints: ``review_next``,
``review_open``, ``review_approve``, ``review_reject``, ``review_save_mask``, ``review_fill``,
``review_save_anchors``, ``review_save_ordinal``, ``review_note``, ``review_undo``,
``review_3d``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import gradio as gr
import numpy as np

from depthweb.config import Settings
from depthweb.services.review import access
from depthweb.services.review import session as svc
from depthweb.services.review.admin import dataset_names
from depthweb.ui import admin_tab
from depthweb.ui.auth import ReviewApp, login_button, review_setup
from depthweb.ui.common import html_text, md_escape, user_errors
from depthweb.ui.review_view import (
    SHORTCUTS_JS,
    SHORTCUTS_TEXT,
    Shown,
    info_markdown,
    limits_markdown,
    marked_photo,
    notes_markdown,
    wire_points,
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
        role = access.user_role(self.ctx, name)
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
        shown = Shown(page.task_id, page.label_shape, page.photo, pending, dataset,
                      photo_file=page.photo_file)
        history = [[h.version, h.when, h.author, h.action, h.details] for h in page.history]
        return [page.task_id, page.version, info_markdown(page, role == "admin"),
                page.photo_file, page.teacher_file, page.label_file, None, history,
                notes_markdown(page.notes), who, shown]

    @staticmethod
    def fresh_edits(page: svc.TaskPage | None) -> list:
        editor = None if page is None else {"background": page.photo_file, "layers": [],
                                            "composite": None}
        return [editor, [], []]

    def load_next(self, dataset, request, profile) -> list:
        name = self.app.username(request, profile)
        with user_errors("load the next task"):
            out = svc.next_outcome(self.ctx, name, dataset=dataset or None)
        page = out.page
        status = ("Nothing left to review for you here: the queue is empty."
                  if page is None else f"Task {page.task_id} is yours for the next 10 minutes.")
        status = f"{out.note} {status}".strip()
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

    def save(self, what: str, do: Callable[[str | None, str | None], svc.Outcome], task_id,
             shown: Shown | None, request, profile) -> list:
        """Run ``do(user name, dataset)``: one service call that saves and returns the page to
        show next (the same task, or the user's next one). A stale save warns and reloads,
        keeping the painted mask and the points."""
        name = self.app.username(request, profile)
        if task_id in (None, ""):
            raise gr.Error("Open a task first (press Next task).", print_exception=False)
        ds = shown.dataset if shown is not None else None
        with user_errors(what):
            try:
                out = do(name, ds)
            except svc.StaleRevisionError as exc:
                gr.Warning(f"{html_text(exc)} Your mask and points are still on the page.")
                page = svc.open_page(self.ctx, name, int(task_id))
                status = (f"Not saved: task {task_id} changed meanwhile (now version "
                          f"{page.version}). It was reloaded; check it and save again.")
                same = shown is not None and shown.task_id == page.task_id
                view = self.view(page, name, dataset=ds, pending=shown.pending if same else None)
                if same:  # the tables stay (skipped below): so do the points behind them
                    view[-1] = replace(view[-1], anchors=shown.anchors, pairs=shown.pairs)
                return [*view, gr.skip(), gr.skip(), gr.skip(), status]
        done = f"Saved: {what} on task {task_id} (now version {out.version})."
        page = out.page
        if page is None or page.task_id != int(task_id):
            nxt = f" Next: task {page.task_id}." if page else " The queue is empty."
            done = f"{done}{nxt} {out.note}".strip()
            return [*self.view(page, name, done, dataset=ds), *self.fresh_edits(page), done]
        return [*self.view(page, name, dataset=ds), *self.fresh_edits(page), done]

    def same(self, name: str | None, task_id, save: Callable[[], int]) -> svc.Outcome:
        return svc.with_page(self.ctx, name, int(task_id), save)

    def show_3d(self, task_id, request, profile):
        name = self.app.username(request, profile)
        if task_id in (None, ""):
            raise gr.Error("Open a task first (press Next task).", print_exception=False)
        with user_errors("build the 3D view"):
            return svc.figure_3d(self.ctx, name, int(task_id))


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
        return gr.Tab(visible=access.user_role(app.ctx, app.username(request, profile)) == "admin")

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
        next_btn = gr.Button("Next task (N)", variant="primary", elem_id="review-next",
                             scale=1)
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
            tilt = gr.Checkbox(False, label="Tilt the whole label instead (global; changes "
                               "every pixel)", elem_id="review-tilt")
            with gr.Row():
                save_pairs = gr.Button("Save pairs", elem_id="review-save-pairs")
                clear = gr.Button("Clear points", elem_id="review-clear")
            gr.Markdown(limits_markdown(), elem_id="review-limits")
    with gr.Row():
        reasons = gr.CheckboxGroup(list(svc.REASON_TAGS), label="Reject reasons",
                                   elem_id="review-reasons")
        note = gr.Textbox(label="Note (stored as typed)", lines=2, max_length=4000,
                          elem_id="review-note")
    with gr.Row():
        approve = gr.Button("Approve (A)", variant="primary", elem_id="review-approve")
        reject = gr.Button("Reject (R)", variant="stop", elem_id="review-reject")
        undo = gr.Button("Undo my last correction (U)", elem_id="review-undo")
        save_note = gr.Button("Save note", elem_id="review-save-note")
    gr.Markdown(SHORTCUTS_TEXT, elem_id="review-shortcuts")
    show_3d = gr.Button("Show 3D view of the label", elem_id="review-show-3d")
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
        save_note=save_note, clear=clear, undo=undo, tilt=tilt, show_3d=show_3d, plot=plot)
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
        return h.save("approve", lambda n, ds: svc.approve_page(
            ctx, n, task_id, version, note, dataset=ds), task_id, shown, request, profile)

    bind(c["approve"], review_approve, [*ident, c["note"], st], "review_approve")

    def review_reject(task_id, version, reasons, note, shown: Shown | None,
                      request: gr.Request, profile: gr.OAuthProfile | None = None):
        """Reject the current label with reason tags; shows the next task."""
        return h.save("reject", lambda n, ds: svc.reject_page(
            ctx, n, task_id, version, reasons, note, dataset=ds), task_id, shown, request,
            profile)

    bind(c["reject"], review_reject, [*ident, c["reasons"], c["note"], st], "review_reject")

    def review_save_mask(task_id, version, editor, mode, shown: Shown | None,
                         request: gr.Request, profile: gr.OAuthProfile | None = None):
        """Save the painted brush strokes as the ignore mask (union / replace / subtract)."""
        return h.save("ignore mask", lambda n, ds: h.same(n, task_id, lambda: svc.save_region(
            ctx, n, task_id, version, _editor_region(editor), "mask", mode=mode or "union")),
            task_id, shown, request, profile)

    bind(c["save_mask"], review_save_mask, [*ident, c["editor"], c["mask_mode"], st],
         "review_save_mask")

    def review_fill(task_id, version, editor, mode, shown: Shown | None,
                    request: gr.Request, profile: gr.OAuthProfile | None = None):
        """Fill the painted region: ``plane`` (fitted to its border) or ``far``."""
        return h.save(f"{mode} fill", lambda n, ds: h.same(n, task_id, lambda: svc.save_region(
            ctx, n, task_id, version, _editor_region(editor), mode or "plane")),
            task_id, shown, request, profile)

    bind(c["fill"], review_fill, [*ident, c["editor"], c["fill_mode"], st], "review_fill")

    def review_save_anchors(task_id, version, table, shown: Shown | None,
                            request: gr.Request, profile: gr.OAuthProfile | None = None):
        """Scale anchors [[x, y, depth_m], ...] in label pixels: re-fit scale and shift."""
        return h.save("anchors", lambda n, ds: h.same(n, task_id, lambda: svc.save_anchors(
            ctx, n, task_id, version, table)), task_id, shown, request, profile)

    bind(c["save_anchors"], review_save_anchors, [*ident, c["anchors"], st],
         "review_save_anchors")

    def review_save_ordinal(task_id, version, table, tilt, shown: Shown | None,
                            request: gr.Request, profile: gr.OAuthProfile | None = None):
        """Ordinal pairs [[closer x, y, farther x, y], ...] in label pixels (local change
        around each closer point; ``tilt``: one global tilt instead)."""
        return h.save("ordinal pairs", lambda n, ds: h.same(n, task_id, lambda: svc.save_pairs(
            ctx, n, task_id, version, table, tilt=bool(tilt))), task_id, shown, request,
            profile)

    bind(c["save_pairs"], review_save_ordinal, [*ident, c["pairs"], c["tilt"], st],
         "review_save_ordinal")

    def review_note(task_id, version, text, shown: Shown | None,
                    request: gr.Request, profile: gr.OAuthProfile | None = None):
        """A free-text note on the task."""
        return h.save("note", lambda n, ds: h.same(n, task_id, lambda: svc.save_note(
            ctx, n, task_id, version, text)), task_id, shown, request, profile)

    bind(c["save_note"], review_note, [*ident, c["note"], st], "review_note")

    def review_undo(task_id, version, shown: Shown | None,
                    request: gr.Request, profile: gr.OAuthProfile | None = None):
        """Revert your own last correction of the task (a new revision; history kept)."""
        return h.save("undo", lambda n, ds: h.same(n, task_id, lambda: svc.undo(
            ctx, n, task_id, version)), task_id, shown, request, profile)

    bind(c["undo"], review_undo, [*ident, st], "review_undo")

    def review_3d(task_id, request: gr.Request, profile: gr.OAuthProfile | None = None):
        """The plotly 3D view of the label on the page (built only when asked for)."""
        return h.show_3d(task_id, request, profile)

    c["show_3d"].click(review_3d, [c["task_num"]], [c["plot"]], api_name="review_3d",
                       show_progress_on=[c["plot"]])
    gr.on(triggers=None, fn=None, js=SHORTCUTS_JS, inputs=None, outputs=None)

    def review_ping() -> str:
        """A trivial handler: the protocol's floor for the review benchmark."""
        return "ok"

    gr.api(review_ping, api_name="review_ping")
    wire_points(c, ANCHOR)
