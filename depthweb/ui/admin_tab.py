"""Admin tab: queue counts, per-reviewer statistics (agreement, gold accuracy), adjudication of
disagreements, gold tasks, N reviews per task, users, the import / pseudo-label / export jobs, and
the jobs table (every such job, from the web or the CLI: status, done / total, message; it loads
when the page opens and refreshes every :data:`JOBS_REFRESH_S` seconds while the tab is shown).

Everything is checked server-side (admins only, in :mod:`depthweb.services.review.admin`); the
tab is shown to admins only (cosmetic). Names typed by users (datasets, files, exports) are
escaped wherever they are rendered as Markdown (:func:`~depthweb.ui.common.md_inline`). API
endpoints: ``admin_overview``, ``admin_adjudicate``, ``admin_gold``, ``admin_reviews_per_task``,
``admin_users``, ``admin_add_user``, ``admin_set_user``, ``admin_set_password``, ``admin_import``,
``admin_pseudo_label``, ``admin_export``, ``admin_jobs``.
"""

from __future__ import annotations

import gradio as gr
from gradio.context import Context

from depthweb.services import accounts
from depthweb.services.review import admin as svc
from depthweb.services.review.access import user_role
from depthweb.services.review.exporter import FILTERS
from depthweb.services.review.jobs import HEADERS as JOB_HEADERS
from depthweb.services.studio import model_choices
from depthweb.ui.auth import ReviewApp
from depthweb.ui.common import GPU_QUEUE, md_escape, md_inline, user_errors

COUNT_HEADERS = ["status", "tasks"]
REVIEWER_HEADERS = ["reviewer", "reviews", "approve", "reject", "agreement", "gold reviews",
                    "gold accuracy"]
DISAGREE_HEADERS = ["task", "version", "image", "reviews"]
USER_HEADERS = ["name", "role", "active", "created (UTC)"]
ROLES = ["admin", "reviewer", "viewer"]
JOBS_REFRESH_S = 3.0


def _progress(progress: gr.Progress, verb: str):
    def report(done: int, total: int, name: str) -> None:
        progress((done, max(total, 1)), desc=f"{verb} {name}")

    return report


def build(app: ReviewApp) -> None:
    """Lay out the tab and wire its events (inside a ``gr.Blocks`` context)."""
    ctx = app.ctx
    tab = Context.block  # the Admin tab when built inside one (its Tabs drive the timer)
    status = gr.Markdown(elem_id="admin-status")
    with gr.Row(equal_height=True):
        dataset = gr.Dropdown([], value=None, label="Dataset (empty: all)", allow_custom_value=True,
                              elem_id="admin-dataset", scale=3)
        refresh = gr.Button("Refresh", variant="primary", elem_id="admin-refresh", scale=1)
    with gr.Row():
        counts = gr.Dataframe(headers=COUNT_HEADERS, interactive=False, label="Queue",
                              elem_id="admin-counts", scale=1)
        reviewers = gr.Dataframe(headers=REVIEWER_HEADERS, interactive=False, scale=3,
                                 label="Reviewers", elem_id="admin-reviewers")
    with gr.Accordion("Disagreements, gold tasks, reviews per task", open=True):
        disagreements = gr.Dataframe(headers=DISAGREE_HEADERS, interactive=False,
                                     label="Tasks whose reviews disagree (select a row)",
                                     elem_id="admin-disagreements")
        with gr.Row(equal_height=True):
            task = gr.Number(None, label="Task", precision=0, elem_id="admin-task")
            version = gr.Number(None, label="Version", precision=0, elem_id="admin-version")
            decision = gr.Radio(["approve", "reject"], value="approve", label="Decision")
            note = gr.Textbox(label="Note", max_length=4000)
            adjudicate = gr.Button("Adjudicate", elem_id="admin-adjudicate")
        with gr.Row(equal_height=True):
            gold = gr.Radio([("gold: approve", "approve"), ("gold: reject", "reject"),
                             ("not gold", "")], value="approve", label="Gold answer of the task")
            set_gold = gr.Button("Set gold answer", elem_id="admin-gold")
            n_reviews = gr.Number(1, label="Reviews per task (dataset)", precision=0, minimum=1)
            set_n = gr.Button("Set reviews per task", elem_id="admin-reviews-per-task")
    with gr.Accordion("Users", open=False):
        users = gr.Dataframe(headers=USER_HEADERS, interactive=False, elem_id="admin-users")
        users_btn = gr.Button("List users", elem_id="admin-list-users", size="sm")
        with gr.Row(equal_height=True):
            name = gr.Textbox(label="Name", elem_id="admin-user-name")
            password = gr.Textbox(label="Password (new users)", type="password")
            role = gr.Dropdown(ROLES, value="reviewer", label="Role")
            active = gr.Checkbox(True, label="Active")
            add_user = gr.Button("Add user", elem_id="admin-add-user")
            set_user = gr.Button("Update role / active", elem_id="admin-set-user")
            set_password = gr.Button("Set password", elem_id="admin-set-password")
    with gr.Accordion("Jobs (from the web and the CLI)", open=True):
        jobs = gr.Dataframe(headers=JOB_HEADERS, interactive=False, elem_id="admin-jobs",
                            max_height=320)
        jobs_btn = gr.Button("Refresh jobs", elem_id="admin-refresh-jobs", size="sm")
        jobs_timer = gr.Timer(JOBS_REFRESH_S, active=False)
    with gr.Accordion("Import, pseudo-label, export", open=False):
        with gr.Row():
            files = gr.File(label="Images or zips", file_count="multiple",
                            file_types=["image", ".zip"], elem_id="admin-files")
            with gr.Column():
                import_ds = gr.Textbox(label="Import into dataset (created when missing)")
                do_import = gr.Button("Import", elem_id="admin-import")
        with gr.Row(equal_height=True):
            models = model_choices(app.settings)
            model = gr.Dropdown([(m.label, m.name) for m in models],
                                value=next((m.name for m in models if m.available), None),
                                label="Teacher model")
            weights = gr.Textbox(label="Weights (optional local path)")
            batch = gr.Number(4, label="Batch size", precision=0, minimum=1)
            uncertainty = gr.Dropdown(["flip", "none"], value="flip", allow_custom_value=True,
                                      label="Uncertainty (flip, none, second-model:NAME)")
            limit = gr.Number(0, label="At most (0: all)", precision=0, minimum=0)
            do_label = gr.Button("Pseudo-label dataset", elem_id="admin-pseudo-label")
        with gr.Row(equal_height=True):
            export_filter = gr.Dropdown(list(FILTERS), value="best", label="Export filter")
            export_name = gr.Textbox(label="Export folder name (under <data dir>/exports)")
            do_export = gr.Button("Export", elem_id="admin-export")
        job = gr.Markdown(elem_id="admin-job")

    def who(request: gr.Request, profile: gr.OAuthProfile | None) -> str | None:
        return app.username(request, profile)

    def admin_overview(ds, request: gr.Request, profile: gr.OAuthProfile | None = None):
        """Queue counts, reviewer statistics and open disagreements of a dataset (or all)."""
        user = who(request, profile)
        with user_errors("load the overview"):
            o = svc.overview(ctx, user, ds or None)
            names = svc.dataset_names(ctx, user)
        choices = [("all datasets", "")] + [(n, n) for n in names]
        broken = "".join(f"\n- task {t} ({md_escape(str(img))}): {md_escape(why)}"
                         for t, img, why in (o.broken or [])[:20])
        return (gr.Dropdown(choices=choices, value=ds or ""), list(o.counts.items()),
                o.reviewers, o.disagreements, o.required_reviews or 1,
                f"{sum(o.counts.values())} tasks, {len(o.disagreements)} disagreement(s), "
                f"{len(o.broken or [])} broken (set aside: a file is missing or corrupt)."
                + broken)

    overview_out = [dataset, counts, reviewers, disagreements, n_reviews, status]
    refresh.click(admin_overview, [dataset], overview_out, api_name="admin_overview")

    def on_load(request: gr.Request, profile: gr.OAuthProfile | None = None):
        # the admin tables load when the page opens (no Refresh needed)
        user = who(request, profile)
        if user_role(ctx, user) != "admin":
            return tuple(gr.skip() for _ in range(len(overview_out) + 3))
        # without a Tabs to watch, the jobs table refreshes while the page is open
        return (*admin_overview("", request, profile), svc.users_table(ctx, user),
                svc.jobs_table(ctx, user), gr.Timer(active=not isinstance(tab, gr.Tab)))

    gr.on(triggers=None, fn=on_load, inputs=None,
          outputs=[*overview_out, users, jobs, jobs_timer], api_visibility="private")

    def admin_jobs(request: gr.Request, profile: gr.OAuthProfile | None = None):
        """The newest jobs (import, pseudo-label, export; from the web or the CLI) with their
        status and done / total; jobs whose process died are shown as interrupted."""
        with user_errors("list the jobs"):
            return svc.jobs_table(ctx, who(request, profile))

    jobs_btn.click(admin_jobs, None, [jobs], api_name="admin_jobs")

    def tick(request: gr.Request, profile: gr.OAuthProfile | None = None):
        user = who(request, profile)
        if user_role(ctx, user) != "admin":
            return gr.skip(), gr.Timer(active=False)
        return svc.jobs_table(ctx, user), gr.skip()

    jobs_timer.tick(tick, None, [jobs, jobs_timer], api_visibility="private",
                    show_progress="hidden")
    if isinstance(tab, gr.Tab) and isinstance(getattr(tab, "parent", None), gr.Tabs):
        def shown(evt: gr.SelectData, request: gr.Request,
                  profile: gr.OAuthProfile | None = None):
            # the timer runs while the Admin tab is the one shown (admins only)
            data = getattr(evt, "_data", None) or {}
            picked = tab.id in (data.get("id"), data.get("index")) or data.get("value") == tab.label
            on = picked and user_role(ctx, who(request, profile)) == "admin"
            return gr.Timer(active=on)

        def opened(ds, request: gr.Request, profile: gr.OAuthProfile | None = None):
            # opening the tab shows the queue as it is now, not as it was when the page loaded
            user = who(request, profile)
            if user_role(ctx, user) != "admin":
                return tuple(gr.skip() for _ in range(len(overview_out) + 1))
            return (*admin_overview(ds or "", request, profile), svc.jobs_table(ctx, user))

        tab.parent.select(shown, None, [jobs_timer], api_visibility="private",
                          show_progress="hidden")
        tab.select(opened, [dataset], [*overview_out, jobs],
                   api_visibility="private", show_progress="hidden")

    def pick(table, evt: gr.SelectData):
        row = evt.row_value or []
        return (row[0], row[1]) if len(row) >= 2 else (gr.skip(), gr.skip())

    disagreements.select(pick, [disagreements], [task, version], api_visibility="private")

    def admin_adjudicate(ds, task_id, ver, dec, text, request: gr.Request,
                         profile: gr.OAuthProfile | None = None):
        """The admin's final approve / reject of a task at its version."""
        with user_errors("adjudicate"):
            new = svc.adjudicate_task(ctx, who(request, profile), task_id, ver, dec, text)
        gr.Info(f"Task {int(task_id)}: {dec} (now version {new}).")
        return admin_overview(ds, request, profile)

    adjudicate.click(admin_adjudicate, [dataset, task, version, decision, note], overview_out,
                     api_name="admin_adjudicate")

    def admin_gold(ds, task_id, ver, answer, request: gr.Request,
                   profile: gr.OAuthProfile | None = None):
        """Make a task gold with a known answer ("" = not gold)."""
        with user_errors("set the gold answer"):
            new = svc.set_gold_answer(ctx, who(request, profile), task_id, ver, answer)
        gr.Info(f"Task {int(task_id)} gold answer: {answer or 'none'} (now version {new}).")
        return admin_overview(ds, request, profile)

    set_gold.click(admin_gold, [dataset, task, version, gold], overview_out,
                   api_name="admin_gold")

    def admin_reviews_per_task(ds, n, request: gr.Request,
                               profile: gr.OAuthProfile | None = None):
        """N reviews per task for the dataset (open tasks already at N are decided now)."""
        with user_errors("set reviews per task"):
            changed = svc.set_reviews_per_task(ctx, who(request, profile), ds, int(n or 1))
        gr.Info(f"{changed} open task(s) now need {int(n or 1)} review(s).")
        return admin_overview(ds, request, profile)

    set_n.click(admin_reviews_per_task, [dataset, n_reviews], overview_out,
                api_name="admin_reviews_per_task")

    def admin_users(request: gr.Request, profile: gr.OAuthProfile | None = None):
        """All users with role and active flag."""
        with user_errors("list the users"):
            return svc.users_table(ctx, who(request, profile))

    users_btn.click(admin_users, None, [users], api_name="admin_users")

    def admin_add_user(new_name, new_password, new_role, request: gr.Request,
                       profile: gr.OAuthProfile | None = None):
        """Add a user (the password is stored as an argon2 hash)."""
        user = who(request, profile)
        with user_errors("add the user"):
            svc.add_user(ctx, user, new_name, new_password, new_role)
            return svc.users_table(ctx, user), ""

    add_user.click(admin_add_user, [name, password, role], [users, password],
                   api_name="admin_add_user")

    def admin_set_user(user_name, new_role, is_active, request: gr.Request,
                       profile: gr.OAuthProfile | None = None):
        """Change a user's role and active flag."""
        user = who(request, profile)
        with user_errors("update the user"):
            svc.set_user(ctx, user, user_name, new_role, bool(is_active))
            return svc.users_table(ctx, user)

    set_user.click(admin_set_user, [name, role, active], [users], api_name="admin_set_user")

    def admin_set_password(user_name, new_password, request: gr.Request,
                           profile: gr.OAuthProfile | None = None):
        """Give a user a new password; their open logins end."""
        with user_errors("set the password"):
            accounts.set_password(ctx, user_name, new_password, acting=who(request, profile))
        gr.Info(f"New password set for {user_name}; their logins have ended.")
        return ""

    set_password.click(admin_set_password, [name, password], [password],
                       api_name="admin_set_password")

    def admin_import(paths, ds, request: gr.Request, profile: gr.OAuthProfile | None = None,
                     progress=gr.Progress()):  # noqa: B008
        """Import uploaded images / zips into a dataset (duplicates skipped)."""
        with user_errors("import the images"):
            report = svc.run_import(ctx, who(request, profile), list(paths or []), ds,
                                    progress=_progress(progress, "importing"))
        failed = "".join(f"\n- {md_inline(n)}: {md_inline(r)}" for n, r in report.failed[:20])
        return f"**Import**: {md_inline(report.summary())}{failed}"

    do_import.click(admin_import, [files, import_ds], [job], api_name="admin_import")

    def admin_pseudo_label(ds, model_name, weights_path, batch_size, mode, at_most,
                           request: gr.Request, profile: gr.OAuthProfile | None = None,
                           progress=gr.Progress()):  # noqa: B008
        """Run the teacher over the dataset's images that have no prediction yet."""
        with user_errors("pseudo-label the dataset"):
            report = svc.run_pseudo_label(
                ctx, who(request, profile), ds, model_name, weights=weights_path or None,
                batch_size=int(batch_size or 4), uncertainty=mode or "flip",
                limit=int(at_most or 0) or None, progress=_progress(progress, "labelling"))
        return f"**Pseudo-label**: {md_inline(report.summary())}"

    do_label.click(admin_pseudo_label, [dataset, model, weights, batch, uncertainty, limit],
                   [job], api_name="admin_pseudo_label", **GPU_QUEUE)

    def admin_export(ds, filt, folder, request: gr.Request,
                     profile: gr.OAuthProfile | None = None, progress=gr.Progress()):  # noqa: B008
        """Write a training-set export (manifest.jsonl + .parquet + arrays)."""
        with user_errors("export the dataset"):
            report = svc.run_export(ctx, who(request, profile), ds, folder, filt or "best",
                                    progress=_progress(progress, "exporting"))
        return (f"**Export**: {md_inline(report.summary())} "
                f"(sha256 {report.manifest_sha256[:12]}...)")

    do_export.click(admin_export, [dataset, export_filter, export_name], [job],
                    api_name="admin_export")
