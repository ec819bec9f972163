"""`openanomaly ui` as a real subprocess and a headless chromium driven by Playwright, for the
web UI's end-to-end tests (tests/integration/test_ui.py).

The browser is always Debian's chromium (`executable_path`), never one Playwright downloads, and
every request it makes to anything but 127.0.0.1 is blocked and recorded, so a page that would
reach out to the internet shows up in `Browser.blocked` instead of leaving the machine.

Streamlit notes: a text widget commits its value on blur (or Ctrl+Enter), so `fill` presses Tab
afterwards; a script rerun is over when the content a test waits for is there, so the helpers
wait for content (Playwright's `expect`), never for a fixed time.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
from playwright.sync_api import (
    Browser as PlaywrightBrowser,
)
from playwright.sync_api import (
    BrowserContext,
    ConsoleMessage,
    Locator,
    Page,
    Playwright,
    Route,
    ViewportSize,
    expect,
    sync_playwright,
)

from tests.daemon_harness import ROOT
from tests.services import _LocalService

PAGE_TIMEOUT_MS = 30_000  # one Streamlit rerun that calls the daemon; backtests wait longer
VIEWPORT: ViewportSize = {"width": 1400, "height": 1000}


class UiServer(_LocalService):
    """One `python -m openanomaly ui` child process on a free loopback port (started, waited
    for and stopped like the other local services).

    The child gets PYTHONPATH = the repo root and, when `token` is given, OA_HTTP__API_TOKEN;
    no other OA_* variable of ours leaks in. Its stdout and stderr go to `workdir/ui.log`,
    quoted when it fails to come up."""

    name = "ui"

    def __init__(
        self,
        workdir: Path,
        api_url: str,
        *,
        tsdb_url: str | None = None,
        token: str | None = None,
        args: Sequence[str] = (),
    ) -> None:
        super().__init__(workdir)
        self.api_url = api_url
        self.tsdb_url = tsdb_url
        self.token = token
        self.args = list(args)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        args = [sys.executable, "-m", "openanomaly", "ui", "--port", str(self.port)]
        args += ["--address", "127.0.0.1", "--api-url", self.api_url]
        if self.tsdb_url is not None:
            args += ["--tsdb-url", self.tsdb_url]
        return args + self.args

    def popen_options(self) -> dict[str, Any]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OA_")}
        env["PYTHONPATH"] = str(ROOT)
        # Belt and braces: the browser's usage statistics would go to the internet.
        env["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] = "false"
        if self.token is not None:
            env["OA_HTTP__API_TOKEN"] = self.token
        return {"cwd": self.workdir, "env": env}

    def is_ready(self) -> bool:
        try:
            response = httpx.get(self.url + "/_stcore/health", timeout=1, trust_env=False)
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and response.text.strip() == "ok"

    def start(self, timeout: float = 60.0) -> Self:  # Streamlit takes seconds to import
        return super().start(timeout)


class Browser:
    """Playwright's chromium, headless, from `executable_path`; one context with a 1400x1000
    viewport whose requests off 127.0.0.1 are aborted and listed in `blocked`."""

    def __init__(self, executable_path: str) -> None:
        self.executable_path = executable_path
        self.blocked: list[str] = []
        self.console_errors: list[str] = []
        self._playwright: Playwright | None = None
        self._browser: PlaywrightBrowser | None = None
        self._context: BrowserContext | None = None

    def start(self) -> Browser:
        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(
                executable_path=self.executable_path, args=["--no-sandbox"], headless=True
            )
            context = self._browser.new_context(viewport=VIEWPORT)
            self._context = context
            context.set_default_timeout(PAGE_TIMEOUT_MS)
            context.route("**/*", self._only_loopback)
        except BaseException:
            self.close()
            raise
        return self

    def _only_loopback(self, route: Route) -> None:
        url = route.request.url
        if url.startswith(("http://127.0.0.1:", "ws://127.0.0.1:", "data:", "blob:")):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()

    def new_page(self) -> Page:
        assert self._context is not None, "the browser is not started"
        page = self._context.new_page()
        page.on("console", self._console)
        return page

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            where = message.location.get("url", "")
            self.console_errors.append(f"{message.text} ({where})" if where else message.text)

    def close(self) -> None:
        for closer in (self._context, self._browser):
            if closer is not None:
                with contextlib.suppress(Exception):  # already gone with the browser
                    closer.close()
        if self._playwright is not None:
            self._playwright.stop()
        self._context = self._browser = self._playwright = None

    def __enter__(self) -> Browser:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --- page helpers ----------------------------------------------------------------------------


def open_app(page: Page, url: str, expect_text: str, timeout_ms: int = PAGE_TIMEOUT_MS) -> None:
    """Load the app and wait until `expect_text` is on the page (the first rerun is done)."""
    page.goto(url)
    expect(page.get_by_text(expect_text).first).to_be_visible(timeout=timeout_ms)


def go_to(page: Page, title: str) -> None:
    """Follow the sidebar navigation link named `title` (st.navigation)."""
    link = page.locator('[data-testid="stSidebarNav"] a', has_text=_exactly(title))
    expect(link).to_have_count(1)
    link.click()


def fill(page: Page, label: str, text: str) -> None:
    """Type `text` into the widget labelled `label` and commit it (Tab blurs the widget)."""
    widget = page.get_by_label(label, exact=True)
    widget.fill(text)
    widget.press("Tab")
    expect(widget).to_have_value(text)


TABLES_JS = """
() => Array.from(document.querySelectorAll(
    '[data-testid="stElementContainer"]:not([data-stale="true"]) [data-testid="stTable"] table'
)).map(table => {
    const text = cell => cell.innerText.trim();
    const head = Array.from(table.querySelectorAll('thead tr:last-child th')).map(text);
    const rows = Array.from(table.querySelectorAll('tbody tr')).map(
        tr => Array.from(tr.querySelectorAll('th, td')).map(text));
    return {head, rows};
})
"""


def tables(page: Page) -> list[list[dict[str, str]]]:
    """Every st.table of the latest script run (see `current`) as a list of rows {column
    header: cell text}. A row with one cell more than the header (an index column without a
    header) drops its first cell."""
    out = []
    for table in page.evaluate(TABLES_JS):
        head: list[str] = table["head"]
        rows = []
        for row in table["rows"]:
            cells = row[1:] if len(row) == len(head) + 1 else row
            if head and not head[0] and len(cells) == len(head):
                rows.append(dict(zip(head[1:], cells[1:], strict=True)))
            else:
                rows.append(dict(zip(head, cells, strict=False)))
        out.append(rows)
    return out


def table_with(page: Page, column: str, timeout_ms: int = PAGE_TIMEOUT_MS) -> list[dict[str, str]]:
    """The rows of the first st.table with a `column` column, once one is on the page (a
    rerun sends its elements one by one: the heading above a table can come before it)."""
    header = current(page).locator('[data-testid="stTable"] thead th', has_text=_exactly(column))
    expect(header.first).to_be_visible(timeout=timeout_ms)
    found = tables(page)
    for rows in found:
        if rows and column in rows[0]:
            return rows
    raise AssertionError(f"no table with a {column!r} column among {found!r}")


def current(page: Page) -> Locator:
    """The page's elements of the latest script run. While Streamlit reruns, elements of the
    previous run stay in the page, marked stale, until the run ends: text that moved can then
    be there twice."""
    return page.locator('[data-testid="stElementContainer"]:not([data-stale="true"])')


def pick(page: Page, label: str, option: str) -> None:
    """Choose `option` in the st.selectbox labelled `label` (the caller waits for what the
    choice shows: the box's text does not say it)."""
    box = page.locator('[data-testid="stSelectbox"]').filter(has=page.get_by_text(_exactly(label)))
    box.get_by_role("combobox").click()
    page.get_by_role("option", name=option, exact=True).click()


def _exactly(text: str) -> re.Pattern[str]:
    return re.compile(rf"^\s*{re.escape(text)}\s*$")


MAIN_HEIGHT_JS = """
() => {
    const main = document.querySelector('[data-testid="stMain"]');
    return Math.ceil(main ? main.scrollHeight : document.documentElement.scrollHeight);
}
"""
TWO_FRAMES_JS = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"


def screenshot(page: Page, path: Path) -> Path:
    """The whole page. Streamlit scrolls its main area inside a viewport-high element, so a
    `full_page` screenshot alone stops at the fold: the viewport grows to the main area's
    height for the shot, then shrinks back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size
    assert size is not None
    height = max(size["height"], page.evaluate(MAIN_HEIGHT_JS))
    page.set_viewport_size({"width": size["width"], "height": height})
    try:
        page.evaluate(TWO_FRAMES_JS)  # laid out at the new size
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size(size)
    assert path.stat().st_size > 0
    return path
