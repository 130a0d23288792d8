"""User text is escaped wherever it is rendered.

Unit tests: the escape helpers make any text inert Markdown whose rendering (markdown-it, HTML
allowed, as permissive as Gradio's renderer) shows exactly the text. API tests: the fields that
could smuggle markup but need not (user names, reject reasons) refuse it; student names are
refused in the browser test.
Browser tests (Debian Chromium): notes, reject notes, image names, dataset and export names and
error messages carrying ``<img onerror>``, ``<script>`` and ``javascript:`` payloads are shown
literally in the Review, Admin and Train tabs and in error toasts, and none of them runs.
"""

from __future__ import annotations

import html
import re

import numpy as np
import pytest

from depthweb.ui.common import html_text, md_escape, md_inline
from tests.review_ui.server import PASSWORD
from tests.security import payloads as pl

TRICKY = [*pl.PAYLOADS, "# heading", "- item", "1. item", "> quote", "| a | b |", "a\nb",
          "&lt;img src=x&gt;", "<https://x>", "![i](x)", "don't & \"quote\"", "a_b_c *d*"]


def _render(markdown: str) -> str:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)


def _text(rendered: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", rendered.replace("<br>", "\n"))).strip()


def _random_text(rng: np.random.Generator) -> str:
    alphabet = [*"<>&\"'`*_[](){}#+-.!|~\\/:= abcXYZ019", "javascript:", "\n"]
    return "".join(rng.choice(alphabet, size=int(rng.integers(1, 40))))


CONTEXTS = {  # where the app puts escaped text -> the elements that context itself makes
    "mid-line": ("x {}", {"p", "br"}),
    "line start": ("{}", {"p", "br"}),
    "list item": ("- {}", {"ul", "li", "p", "br"}),
    "table cell": ("| k | v |\n|---|---|\n| x | {} |", {"table", "thead", "tbody", "tr",
                                                      "th", "td"}),
}


@pytest.mark.parametrize("escape,where", [
    (md_escape, "mid-line"), (md_escape, "line start"), (md_escape, "table cell"),
    (md_inline, "mid-line"), (md_inline, "line start"), (md_inline, "list item"),
])
def test_escaped_text_renders_as_itself_and_makes_no_element(escape, where):
    template, structure = CONTEXTS[where]
    rng = np.random.default_rng(5)
    texts = [*TRICKY, *(_random_text(rng) for _ in range(300))]
    if where == "table cell":  # md_escape'd cells: one line each (notes use <br>)
        texts = [" ".join(t.splitlines()) for t in texts]
    for text in texts:
        rendered = _render(template.format(escape(text)))
        tags = set(re.findall(r"</?([a-z0-9]+)", rendered))
        assert tags <= structure, (text, rendered)  # nothing but the context's own elements
        prefix = _text(_render(template.format("")))
        shown = _text(rendered).removeprefix(prefix) if prefix else _text(rendered)
        assert " ".join(shown.split()) == " ".join(text.split()), (text, rendered)


def test_html_text_keeps_quotes_and_escapes_tags():
    assert html_text(pl.IMG) == '&lt;img src=x onerror="window.__xss=1"&gt;'
    assert html_text("a & b's") == "a &amp; b's"


def test_fields_that_need_no_markup_refuse_it(login):
    from gradio_client.exceptions import AppError

    boss = login("boss")
    with pytest.raises(AppError, match="name"):
        boss.predict(pl.IMG, "a long password", "viewer", api_name="/admin_add_user")
    with pytest.raises(AppError, match="not in the list of choices"):  # tags only
        login("rev").predict(1, 1, [pl.IMG], "", api_name="/review_reject")


@pytest.fixture(scope="module")
def world(sec_server, login, tmp_path_factory) -> pl.World:
    return pl.seed_payloads(login, str(sec_server.teacher_weights),
                            tmp_path_factory.mktemp("payloads"))


@pytest.fixture
def page(browser, sec_server):
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(sec_server.url)
    page.locator("input[type=text]").fill("boss")
    page.locator("input[type=password]").fill(PASSWORD)
    page.get_by_role("button", name="Login").click()
    page.wait_for_selector("#dw-header")
    yield page
    context.close()


def assert_inert(page) -> None:
    """No payload ran, and none became an element (Gradio's sanitiser alone would keep a
    harmless ``<img src="x">``, losing the text)."""
    assert page.evaluate("() => window.__xss") is None
    made = page.locator("img[src='x'], script:has-text('__xss'), a[href^='javascript']")
    assert made.count() == 0


def wait_text(page, selector: str, fragment: str) -> str:
    page.wait_for_function("([s, f]) => { const e = document.querySelector(s);"
                           " return e && e.innerText.includes(f); }", arg=[selector, fragment])
    return page.locator(selector).inner_text()


def toast_text(page, fragment: str) -> str:
    sel = "[data-testid='toast-text']"
    page.wait_for_function("([s, f]) => [...document.querySelectorAll(s)]"
                           ".some(e => e.innerText.includes(f))", arg=[sel, fragment])
    return "\n".join(page.locator(sel).all_inner_texts())


def options(page, selector: str) -> str:
    """The text of a Gradio dropdown's option list (opened, read, closed)."""
    page.locator(f"{selector} input").click()
    text = page.locator(f"{selector} [role=listbox]").inner_text()
    page.keyboard.press("Escape")
    return text


def choose(page, selector: str, value: str) -> None:
    """Type a value into a Gradio dropdown that allows custom values."""
    box = page.locator(f"{selector} input")
    box.fill(value)
    box.press("Enter")


@pytest.mark.e2e
def test_the_review_tab_shows_notes_names_and_history_literally(page, world):
    page.get_by_role("tab", name="Review").click()
    page.locator("#review-task input").fill(str(world.task_id))
    page.click("#review-open")
    wait_text(page, "#review-status", "opened")
    notes = page.locator("#review-notes").inner_text()
    assert all(p in notes for p in pl.PAYLOADS)
    assert pl.GOOD_MEMBER in page.locator("#review-info").inner_text()
    history = page.locator("#review-history").inner_text()
    assert pl.SCRIPT in history and pl.REJECT_NOTE in history
    assert_inert(page)


@pytest.mark.e2e
@pytest.mark.slow
def test_the_admin_tab_shows_names_jobs_and_errors_literally(page, world):
    page.get_by_role("tab", name="Admin").click()
    page.click("#admin-refresh")
    table = wait_text(page, "#admin-disagreements", pl.GOOD_MEMBER)
    assert "rev2: reject (sky)" in table
    assert pl.DATASET in options(page, "#admin-dataset")

    page.get_by_text("Import, pseudo-label, export").click()
    page.locator("#admin-files input[type=file]").set_input_files(str(world.zip_path))
    page.get_by_label("Import into dataset (created when missing)").fill(pl.DATASET)
    page.wait_for_timeout(500)  # the upload finishes before the click is handled
    page.click("#admin-import")
    job = wait_text(page, "#admin-job", "Import")
    assert pl.DATASET in job and pl.BAD_MEMBER in job and "duplicates" in job

    choose(page, "#admin-dataset", "nyu")
    page.get_by_label("Export folder name (under <data dir>/exports)").fill(pl.EXPORT_UI)
    page.click("#admin-export")
    assert pl.EXPORT_UI in wait_text(page, "#admin-job", "Export")

    choose(page, "#admin-dataset", pl.MISSING_DATASET)
    page.click("#admin-refresh")
    assert pl.MISSING_DATASET in toast_text(page, "no dataset named")
    assert_inert(page)


@pytest.mark.e2e
def test_the_train_tab_shows_export_names_and_refusals_literally(page, world):
    page.get_by_role("tab", name="Train").click()
    assert pl.EXPORT_API in options(page, "#train-export")
    page.locator("#train-name textarea, #train-name input").first.fill(pl.STUDENT)
    page.click("#train-start")
    assert pl.STUDENT in toast_text(page, "student")
    assert_inert(page)
