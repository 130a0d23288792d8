"""Train tab (admins only): pick an export, a preset and a step count, start a background run,
watch its progress and loss curve, and compare the registered student with its teacher.

Only wiring: the logic is in :mod:`depthweb.services.train_runs`, which checks on the server
that the user (``gr.Request.username`` or the Hugging Face login) is an active admin in the
database for every call; the tab is hidden from others (cosmetic). API endpoints: ``train_lists``,
``train_start``, ``train_status``, ``train_stop``.
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from depthweb.services import heldout as heldout_svc
from depthweb.services import train as svc
from depthweb.services import train_runs as runs
from depthweb.services.evaluation import comparison_rows
from depthweb.services.review.access import user_role
from depthweb.ui.auth import ReviewApp
from depthweb.ui.common import md_inline, user_errors

COMPARE_HEADERS = ["role", "model", "dataset", "frames", "AbsRel", "RMSE", "delta1", "delta2",
                   "delta3"]
POLL_S = 2.0


def add_train_tab(app: ReviewApp) -> runs.TrainManager:
    """The Train tab (inside a ``gr.Tabs``), shown to admins; returns its run manager."""
    manager = runs.TrainManager()
    with gr.Tab("Train", id="train", visible=False) as tab:  # shown to admins on load
        build(app, manager)

    def admin_only(request: gr.Request, profile: gr.OAuthProfile | None = None):
        # Cosmetic: every train action is also checked on the server.
        return gr.Tab(visible=user_role(app.ctx, app.username(request, profile)) == "admin")

    gr.on(triggers=None, fn=admin_only, inputs=None, outputs=[tab], api_visibility="private")
    return manager


def status_markdown(state: runs.RunState | None) -> str:
    """One paragraph about the run: phase, a text progress bar, loss, time, message (the name
    and message escaped: they can quote what a user typed)."""
    if state is None:
        return "No training run yet."
    frac = state.step / max(state.total_steps, 1)
    bar = "█" * round(20 * frac) + "░" * (20 - round(20 * frac))
    loss = "n/a" if state.loss is None else f"{state.loss:.4f}"
    text = (f"**{md_inline(state.name)}**: {state.phase} · `{bar}` step "
            f"{state.step}/{state.total_steps} · loss {loss} · {state.elapsed_s:.0f} s")
    return text + (f"\n\n{md_inline(state.message)}" if state.message else "")


def curve_frame(state: runs.RunState | None) -> pd.DataFrame:
    rows = svc.loss_curve(state.run_dir) if state is not None else []
    return pd.DataFrame(rows, columns=["step", "loss", "series"])


def build(app: ReviewApp, manager: runs.TrainManager) -> None:
    """Lay out the tab and wire its events (inside a ``gr.Blocks`` context)."""
    ctx = app.ctx
    gr.Markdown("Train a student on a reviewed export (Admin tab → Export). The finished "
                "student is registered, appears in every model list and can pseudo-label the "
                "next dataset as a teacher.")
    with gr.Row(equal_height=True):
        export = gr.Dropdown([], value=None, label="Export (every export the database knows)",
                             elem_id="train-export", scale=3)
        preset = gr.Dropdown(list(svc.PRESETS), value="small", label="Config preset",
                             elem_id="train-preset", scale=1)
        steps = gr.Number(None, label="Steps (empty: the preset's)", precision=0, minimum=0,
                          elem_id="train-steps", scale=1)
        name = gr.Textbox(label="Student name (empty: export + time)", elem_id="train-name",
                          scale=2)
    with gr.Row(equal_height=True):
        eval_dir = gr.Dropdown(runs.eval_folders(app.settings), value=None,
                               allow_custom_value=True, elem_id="train-eval", scale=3,
                               label="Evaluation folder for the teacher comparison (optional; "
                                     "NYU/KITTI layout)")
        init_from = gr.Dropdown([], value=None, elem_id="train-init-from", scale=2,
                                allow_custom_value=True,
                                label="Start from (optional): a registered student to "
                                      "fine-tune, same architecture as the preset")
        refresh = gr.Button("Refresh lists", elem_id="train-refresh", scale=1)
        start = gr.Button("Start training", variant="primary", elem_id="train-start", scale=1)
        stop = gr.Button("Stop", variant="stop", elem_id="train-stop", scale=1)
    status = gr.Markdown("No training run yet.", elem_id="train-status")
    curve = gr.LinePlot(curve_frame(None), x="step", y="loss", color="series",
                        title="Training loss", height=280, elem_id="train-curve")
    table = gr.Dataframe(headers=COMPARE_HEADERS, interactive=False, elem_id="train-compare",
                         label="Student vs teacher (lower AbsRel / RMSE, higher delta is better)")
    with gr.Row(equal_height=True):
        student = gr.Dropdown([], value=None, label="Registered student", scale=3,
                              allow_custom_value=True, elem_id="train-student")
        show_student = gr.Button("Show held-out numbers", elem_id="train-heldout-show", scale=1)
    heldout = gr.Dataframe(headers=heldout_svc.HELDOUT_HEADERS, interactive=False,
                           elem_id="train-heldout",
                           label="Held-out numbers: the student beside its teacher, with the "
                                 "data version (export manifest) it was trained on")
    timer = gr.Timer(POLL_S, active=False)

    def who(request: gr.Request, profile: gr.OAuthProfile | None) -> str | None:
        return app.username(request, profile)

    def train_lists(request: gr.Request, profile: gr.OAuthProfile | None = None):
        """The exports and evaluation folders that can be chosen."""
        with user_errors("list the exports"):
            names = runs.export_names(ctx, who(request, profile))
        return (gr.Dropdown(choices=names, value=names[0] if names else None),
                gr.Dropdown(choices=runs.eval_folders(app.settings)))

    refresh.click(train_lists, None, [export, eval_dir], api_name="train_lists")

    def student_list(request: gr.Request, profile: gr.OAuthProfile | None = None):
        if user_role(ctx, who(request, profile)) != "admin":
            return gr.skip()
        with user_errors("list the students"):
            names = heldout_svc.student_names(ctx, who(request, profile))
        return (gr.Dropdown(choices=names, value=names[0] if names else None),
                gr.Dropdown(choices=names, value=None))

    refresh.click(student_list, None, [student, init_from], api_visibility="private")
    gr.on(triggers=None, fn=student_list, inputs=None, outputs=[student, init_from],
          api_visibility="private")

    def train_heldout(name, request: gr.Request, profile: gr.OAuthProfile | None = None):
        """A registered student's held-out numbers beside its teacher's, with the data
        version it was trained on."""
        with user_errors("show the student's held-out numbers"):
            return heldout_svc.heldout_rows(ctx, who(request, profile), name or "")

    show_student.click(train_heldout, [student], [heldout], api_name="train_heldout")

    def show(state: runs.RunState | None):
        rows = comparison_rows(state.comparison) if state is not None else []
        active = state is not None and state.active
        return status_markdown(state), curve_frame(state), rows, gr.Timer(active=active)

    outputs = [status, curve, table, timer]

    def train_start(export_name, preset_name, n_steps, student, folder, start_from=None,
                    request: gr.Request = None, profile: gr.OAuthProfile | None = None):
        """Start a background run on an export (from random weights, or fine-tuning a
        registered student); the student is registered when it ends."""
        with user_errors("start the training run"):
            state = runs.start_web_run(manager, ctx, who(request, profile),
                                      export=export_name or "", preset=preset_name,
                                      steps=int(n_steps) if n_steps else None,
                                      name=(student or "").strip() or None,
                                      eval_dir=folder or None,
                                      init_from=start_from or None)
        return show(state)

    start.click(train_start, [export, preset, steps, name, eval_dir, init_from], outputs,
                api_name="train_start")

    def train_status(request: gr.Request, profile: gr.OAuthProfile | None = None):
        """Progress, loss curve and teacher comparison of the current (or last) run."""
        with user_errors("read the run's progress"):
            return show(runs.web_status(manager, ctx, who(request, profile)))

    timer.tick(train_status, None, outputs, api_name="train_status", show_progress="hidden")

    def train_stop(request: gr.Request, profile: gr.OAuthProfile | None = None):
        """Stop the run after its current step (a checkpoint is written)."""
        with user_errors("stop the run"):
            return show(runs.stop_web_run(manager, ctx, who(request, profile)))

    stop.click(train_stop, None, outputs, api_name="train_stop")

    def on_load(request: gr.Request, profile: gr.OAuthProfile | None = None):
        user = who(request, profile)
        if user_role(ctx, user) != "admin":
            return gr.skip(), *(gr.skip() for _ in outputs)
        with user_errors("load the Train tab"):
            names = runs.export_names(ctx, user)
            return gr.Dropdown(choices=names, value=names[0] if names else None), \
                *show(runs.web_status(manager, ctx, user))

    gr.on(triggers=None, fn=on_load, inputs=None, outputs=[export, *outputs],
          api_visibility="private")
