"""The web UI (`openanomaly ui`) end to end: a headless chromium (Debian's, driven by Playwright)
on the real Streamlit app, which talks to a real daemon over its HTTP API, which reads a real
VictoriaMetrics seeded with known anomalies.

One set of servers for the module (the session's VictoriaMetrics, one daemon with the API token,
one UI, one browser); each test opens its own page. The seeded metric is 2 days at 1m of 3 series
(a 12-step wave plus N(0, 1) noise) with +12 sigma spikes on host b at known minutes.

Screenshots of every page state go to the pytest tmp dir (`<basetemp>/ui0/ui-screenshots/`,
e.g. /tmp/pytest-of-root/pytest-current/ui0/ui-screenshots); with OA_UPDATE_DOCS_SCREENSHOT=1
the playground with a backtest result and its chart is copied to docs/ui-playground.png, the
screenshot the README shows.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from playwright.sync_api import Page, expect

from openanomaly.adapters.model_engine.catalogs import model_catalog
from openanomaly.config.pipeline_loader import parse_pipeline_text
from openanomaly.local_tsdb import LocalTSDB, free_port
from tests.conftest import require_module
from tests.daemon_harness import (
    ROOT,
    SPIKE_HOST,
    TOKEN,
    Daemon,
    export,
    minute_floor,
    pipeline_yaml,
    seed,
    utc_now,
)
from tests.ui_harness import (
    Browser,
    UiServer,
    current,
    fill,
    go_to,
    open_app,
    pick,
    screenshot,
    table_with,
)

pytestmark = pytest.mark.integration

METRIC = "oa_ui_e2e"
SEEDED = "ui-seeded"  # in the daemon's pipelines.d before it starts
SAVED = "ui-saved"  # written by the playground's "Save to pipelines.d"
TRIED = "ui-tried"  # backtested from the playground, never saved
SPIKE_MINUTES_AGO = (50, 33, 21)
BACKTEST_TIMEOUT_MS = 120_000
SHOWN_ANOMALIES = 50  # the playground lists the top 50
DOCS_SCREENSHOT = ROOT / "docs" / "ui-playground.png"
T = TypeVar("T")


@dataclass
class Stack:
    daemon: Daemon
    ui: UiServer
    browser: Browser
    tsdb_url: str
    now: datetime
    spikes: list[datetime]
    workdir: Path

    @property
    def shots(self) -> Path:
        return self.workdir / "ui-screenshots"


@pytest.fixture(scope="module")
def stack(
    victoria_metrics: LocalTSDB, chromium: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    require_module("streamlit", "uv sync --extra ui")
    workdir = tmp_path_factory.mktemp("ui")
    vm = victoria_metrics
    now = minute_floor(utc_now())
    spikes = [now - timedelta(minutes=m) for m in SPIKE_MINUTES_AGO]
    seed(
        vm.url,
        METRIC,
        end=now,
        spikes=spikes,
        outbox_dir=workdir / "seed-outbox",
        history=timedelta(days=2),
    )
    vm.flush()
    with ExitStack() as cleanup:  # unwinds browser, UI, daemon
        daemon = Daemon(workdir / "daemon", vm.url)
        cleanup.callback(daemon.close)
        pipeline = pipeline_yaml(SEEDED, METRIC, window="6h")
        (daemon.pipelines_dir / f"{SEEDED}.yaml").write_text(pipeline)
        daemon.start()
        ui = cleanup.enter_context(
            UiServer(workdir / "ui", daemon.url, tsdb_url=vm.url, token=TOKEN)
        )
        browser = cleanup.enter_context(Browser(chromium))
        yield Stack(daemon, ui, browser, vm.url, now, spikes, workdir)


@pytest.fixture
def page(stack: Stack, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh tab on the UI; afterwards, no request may have left 127.0.0.1 and the browser
    console must hold no error (a failing script of the frontend). A failed test leaves a
    screenshot of the tab, `failed-<test>.png`, beside the others."""
    failed_before = request.session.testsfailed
    stack.browser.console_errors.clear()
    tab = stack.browser.new_page()
    try:
        yield tab
    finally:
        if request.session.testsfailed > failed_before:
            name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)
            with contextlib.suppress(Exception):  # the tab may be gone with what failed
                screenshot(tab, stack.shots / f"failed-{name}.png")
        tab.close()
    assert stack.browser.blocked == [], "the pages requested hosts other than 127.0.0.1"
    errors = list(stack.browser.console_errors)
    assert errors == [], "the pages logged errors in the browser"


def validator_messages(text: str) -> list[str]:
    """What `openanomaly validate` finds in `text`, as the UI must show it."""
    _, problems = parse_pipeline_text(text, "playground.yaml", model_catalog)
    return [f"{p.where}:{p.line}: {p.field}: {p.reason}" for p in problems]


def _minute(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def labels_text(labels: dict[str, str]) -> str:
    """`{__name__="m", host="b"}`: how PromQL writes a label set."""
    return "{" + ", ".join(f'{k}="{labels[k]}"' for k in sorted(labels)) + "}"


def _host(series: str) -> str:
    """The host label in a Series cell (`{__name__="m", host="b"}`)."""
    match = re.search(r'host="([^"]*)"', series)
    assert match, series
    return match.group(1)


def scored_over_1(stack: Stack, name: str) -> dict[tuple[str, str], str]:
    """What the daemon wrote for pipeline `name` in the last 24 hours that scored over 1, as
    {(minute, host): score as the pages print it}: its raw samples (VictoriaMetrics' export,
    no lookback and no PromQL), read apart from the UI's queries."""
    flush = httpx.get(f"{stack.tsdb_url}/internal/force_flush", timeout=30, trust_env=False)
    assert flush.status_code == 200, flush.text  # the export reads only flushed samples
    now = utc_now()
    raw = export(
        stack.tsdb_url, f'anomaly_score{{pipeline="{name}"}}', now - timedelta(hours=24), now
    )
    return {
        (datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%d %H:%M"), host): f"{v:.2f}"
        for host, samples in raw.items()
        for ts, v in samples
        if v > 1
    }


def while_unchanged(stack: Stack, name: str, check: Callable[[], T]) -> tuple[T, dict[Any, str]]:
    """`check()` (what a page shows) and the anomalies the TSDB holds for `name`, read before
    and after it the same: the daemon scores every minute, and a point it writes between the
    two reads could change both. Tried three times."""
    for _ in range(3):
        before = scored_over_1(stack, name)
        shown = check()
        if scored_over_1(stack, name) == before:
            return shown, before
    raise AssertionError(f"the daemon kept writing anomalies of {name} while the page read")


def open_playground(page: Page, stack: Stack) -> None:
    open_app(page, stack.ui.url, "Pipelines")
    playground(page)


def playground(page: Page) -> None:
    """To the Playground, and wait for its last section: its first run is over, so nothing
    typed next can race it."""
    go_to(page, "Playground")
    expect(page.get_by_role("heading", name="Alert rule", exact=True)).to_be_visible()


def enter_pipeline(page: Page, text: str, name: str) -> None:
    """Type a valid pipeline into the editor and wait until the page has it: the alert rule
    below is built from the text the daemon validated, so it names the pipeline."""
    fill(page, "Pipeline YAML", text)
    rule = page.locator('[data-testid="stCode"]').last
    expect(rule).to_contain_text(f'pipeline="{name}"')


# --- 1. overview ------------------------------------------------------------------------------


def test_the_overview_lists_the_daemons_pipelines(stack: Stack, page: Page) -> None:
    train = stack.daemon.run_after(SEEDED, "train", 0, timeout=120)  # trained on start
    assert train["status"] == "ok", train
    infer = stack.daemon.infer_now(SEEDED)  # it has scored (not waiting for the minute)
    assert infer["status"] == "ok", infer

    def overview() -> list[dict[str, str]]:
        open_app(page, stack.ui.url, "Pipelines")  # the Overview, the default page
        expect(page.get_by_role("heading", name="Pipelines", exact=True)).to_be_visible()
        expect(page.locator('[data-testid="stTable"] table').first).to_be_visible()
        return table_with(page, "Pipeline")

    rows, anomalies = while_unchanged(stack, SEEDED, overview)
    assert [r["Pipeline"] for r in rows] == [SEEDED]
    # what the daemon says about it: trained, a model for the 3 seeded series
    assert rows[0]["Status"] == "ok", rows
    assert rows[0]["Series"] == "3", rows
    assert rows[0]["Last train"].startswith("ok, "), rows
    # every point the daemon wrote that scored over 1, once (the spikes among them)
    assert rows[0]["Anomalies (24 h)"] == str(len(anomalies)), (rows, anomalies)
    screenshot(page, stack.shots / "overview.png")


# --- 2. pipeline page -------------------------------------------------------------------------


def test_the_pipeline_page_charts_what_the_daemon_scored(stack: Stack, page: Page) -> None:
    train = stack.daemon.run_after(SEEDED, "train", 0, timeout=120)
    assert train["status"] == "ok", train
    infer = stack.daemon.infer_now(SEEDED)
    assert infer["status"] == "ok", infer

    def pipeline_page() -> list[dict[str, str]]:
        open_app(page, stack.ui.url, "Pipelines")
        go_to(page, "Pipeline")
        pick(page, "Pipeline", SEEDED)
        expect(page.get_by_role("heading", name=SEEDED, exact=True)).to_be_visible()
        return table_with(page, "Time (UTC)")

    rows, anomalies = while_unchanged(stack, SEEDED, pipeline_page)
    # The spikes (+12 sigma) scored over 1 when the daemon scored them.
    spikes = {(s.strftime("%Y-%m-%d %H:%M"), SPIKE_HOST) for s in stack.spikes}
    assert spikes <= set(anomalies), anomalies
    # The table: each point the daemon wrote over 1, once, with its score.
    assert len(anomalies) <= SHOWN_ANOMALIES
    shown = {(r["Time (UTC)"], _host(r["Series"])): r["Score"] for r in rows}
    assert len(rows) == len(shown)
    assert shown == anomalies
    scores = [float(r["Score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)

    # One chart per series, the worst (host b, the spikes) first, drawn.
    charts = page.locator('[data-testid="stPlotlyChart"]')
    expect(charts).to_have_count(3)
    expect(charts.first.locator(".main-svg").first).to_be_visible()
    expect(charts.first).to_contain_text(f'host="{SPIKE_HOST}"')
    screenshot(page, stack.shots / "pipeline.png")

    # Its runs are one click away: the Models and runs page, filtered to this pipeline.
    page.get_by_role("link", name=f"All models and runs of {SEEDED}").click()
    expect(page.get_by_role("heading", name="Models and runs", exact=True)).to_be_visible()
    expect(page).to_have_url(re.compile(rf"/models\?pipeline={SEEDED}$"))
    box = page.locator('[data-testid="stSelectbox"]').first
    expect(box.get_by_role("combobox", name="Pipeline")).to_have_value(SEEDED)
    active_model = re.compile(rf"; active: {SEEDED} v\d+ \(3 series\)$")
    expect(current(page).get_by_text(active_model)).to_be_visible()


# --- 3. models and runs -----------------------------------------------------------------------


def test_models_and_runs_show_the_model_and_train_now_trains(stack: Stack, page: Page) -> None:
    stack.daemon.run_after(SEEDED, "train", 0, timeout=120)
    runs_before = len(stack.daemon.runs(SEEDED))
    open_app(page, stack.ui.url, "Pipelines")
    go_to(page, "Models and runs")
    expect(page.get_by_role("heading", name="Models and runs", exact=True)).to_be_visible()
    pick(page, "Pipeline", SEEDED)
    train_now = page.get_by_role("button", name="Train now", exact=True)
    expect(train_now).to_be_enabled()

    # The registry holds the trained model, and the page shows it. The grids (st.dataframe)
    # draw on a canvas without an accessible table; the caption under each says what it holds.
    models = stack.daemon.json(f"/api/v1/models?pipeline={SEEDED}")["models"]
    assert models[0]["status"] == "active", models
    assert models[0]["series_count"] == 3, models
    versions = f"{len(models)} model version{'s' if len(models) > 1 else ''}"
    active = f"{SEEDED} v{models[0]['version']} (3 series)"
    expect(current(page).get_by_text(f"{versions}; active: {active}", exact=True)).to_be_visible()
    # Infers run every minute: the page's count lies between the API's before and after.
    caption = current(page).get_by_text(re.compile(r"^\d+ runs?: \d+ ok"))
    expect(caption).to_be_visible()
    shown = int(caption.inner_text().split()[0])
    assert runs_before <= shown <= len(stack.daemon.runs(SEEDED)), (runs_before, shown)
    grids_shown = page.locator('[data-testid="stDataFrame"]')
    expect(grids_shown).to_have_count(2)  # models, runs
    expect(grids_shown.first.locator('[data-testid="data-grid-canvas"]')).to_be_visible()
    expect(page.get_by_text("No models yet", exact=False)).to_have_count(0)
    expect(page.get_by_text("No runs match these filters.")).to_have_count(0)

    # Train now: the daemon runs one more train.
    seen = len(stack.daemon.finished_runs(SEEDED, "train"))
    train_now.click()
    success = page.locator('[data-testid="stAlertContentSuccess"]')
    expect(success).to_contain_text(f"Scheduled: train of {SEEDED}")
    run = stack.daemon.run_after(SEEDED, "train", seen, timeout=120)
    assert run["status"] == "ok", run
    assert datetime.fromisoformat(run["scheduled"]) > stack.now
    screenshot(page, stack.shots / "models-runs.png")


# --- 4. playground: validation ----------------------------------------------------------------


@pytest.mark.parametrize(
    "broken",
    [
        pipeline_yaml("ui-broken", METRIC).replace("step: 1m", "step: 5 minutes"),
        # Markdown would make `__retries__` a bold "retries": the message must read as is
        pipeline_yaml("ui-broken", METRIC) + "__retries__: 3\n",
    ],
    ids=["bad-duration", "unknown-key"],
)
def test_the_playground_shows_the_validators_message(
    stack: Stack, page: Page, broken: str, request: pytest.FixtureRequest
) -> None:
    messages = validator_messages(broken)
    assert messages, "the broken pipeline is valid: the test would prove nothing"
    open_playground(page, stack)
    fill(page, "Pipeline YAML", broken)
    page.get_by_role("button", name="Validate", exact=True).click()
    errors = page.locator('[data-testid="stAlertContentError"]')
    expect(errors).to_have_text(messages)  # each problem, exactly, in the validator's order
    screenshot(page, stack.shots / f"playground-{request.node.callspec.id}.png")


# --- 5. playground: backtest ------------------------------------------------------------------


def test_a_backtest_shows_the_injected_anomalies(stack: Stack, page: Page) -> None:
    start = stack.spikes[0] - timedelta(minutes=15)
    end = stack.now
    open_playground(page, stack)
    enter_pipeline(page, pipeline_yaml(TRIED, METRIC, window="6h"), TRIED)
    fill(page, "From", start.strftime("%Y-%m-%dT%H:%M:%SZ"))
    fill(page, "To", end.strftime("%Y-%m-%dT%H:%M:%SZ"))
    page.get_by_role("button", name="Run backtest", exact=True).click()
    expect(page.get_by_role("heading", name="Anomalies", exact=True)).to_be_visible(
        timeout=BACKTEST_TIMEOUT_MS
    )
    rows = table_with(page, "Time (UTC)")
    for spike in stack.spikes:
        minute = spike.strftime("%Y-%m-%d %H:%M")
        hits = [r for r in rows if r["Time (UTC)"] == minute and _host(r["Series"]) == SPIKE_HOST]
        assert hits, f"the spike at {minute} on host {SPIKE_HOST} is not listed: {rows}"

    # The table is what the daemon found (its latest backtest), highest score first, and the
    # spikes (+12 sigma on N(0, 1) noise) outscore whatever noise crossed the band. Whether
    # noise crosses it somewhere is chance, so no claim that nothing else is listed.
    listed = stack.daemon.json("/api/v1/backtests")["backtests"]
    latest = stack.daemon.json(f"/api/v1/backtests/{listed[0]['id']}")
    assert latest["status"] == "done", latest
    assert latest["pipeline"] == TRIED
    assert datetime.fromisoformat(latest["start"]) == start  # the range as typed
    assert datetime.fromisoformat(latest["end"]) == end
    anomalies = latest["anomalies"][:SHOWN_ANOMALIES]
    expected = [(_minute(a["ds"]), a["labels"]["host"], f"{a['score']:.2f}") for a in anomalies]
    shown = [(r["Time (UTC)"], _host(r["Series"]), r["Score"]) for r in rows]
    assert shown == expected
    scores = [float(r["Score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert min(scores) >= 1
    spike_rows = {(s.strftime("%Y-%m-%d %H:%M"), SPIKE_HOST) for s in stack.spikes}
    assert {(minute, host) for minute, host, _ in shown[: len(stack.spikes)]} == spike_rows

    # The chart of the worst series (host b), drawn.
    chart = page.locator('[data-testid="stPlotlyChart"]').first
    expect(chart.locator(".main-svg").first).to_be_visible()
    expect(chart).to_contain_text(f'host="{SPIKE_HOST}"')
    path = screenshot(page, stack.shots / "playground-backtest.png")
    if os.environ.get("OA_UPDATE_DOCS_SCREENSHOT") == "1":
        shutil.copyfile(path, DOCS_SCREENSHOT)

    # Label sets as PromQL writes them (a table cell is Markdown: `__name__` must not turn
    # into a bold "name").
    series = [labels_text(a["labels"]) for a in anomalies]
    assert series[0] == f'{{__name__="{METRIC}", host="{SPIKE_HOST}"}}'
    assert [r["Series"] for r in rows] == series


# --- 6. playground: save ----------------------------------------------------------------------


def test_saving_writes_a_valid_file_the_daemon_loads(stack: Stack, page: Page) -> None:
    text = pipeline_yaml(SAVED, METRIC, window="6h")
    target = stack.daemon.pipelines_dir / f"{SAVED}.yaml"
    assert not target.exists()
    open_playground(page, stack)
    enter_pipeline(page, text, SAVED)
    with page.expect_download() as download:
        page.get_by_role("button", name="Download YAML", exact=True).click()
    assert download.value.suggested_filename == f"{SAVED}.yaml"
    assert Path(download.value.path()).read_text() == text
    page.get_by_role("button", name="Save to pipelines.d", exact=True).click()
    success = page.locator('[data-testid="stAlertContentSuccess"]')
    expect(success).to_have_text(f"Saved {target}; the daemon loaded pipeline {SAVED}.")
    assert target.read_text() == text
    loaded, problems = parse_pipeline_text(target.read_text(), str(target), model_catalog)
    assert problems == []
    assert [p.pipeline.name for p in loaded] == [SAVED]
    listed = stack.daemon.json("/api/v1/pipelines")
    assert sorted(p["name"] for p in listed["pipelines"]) == sorted([SAVED, SEEDED])
    assert listed["problems"] == []
    state = stack.daemon.json(f"/api/v1/pipelines/{SAVED}")
    assert state["source"].startswith(f"{target}:"), state["source"]
    screenshot(page, stack.shots / "playground-saved.png")


# --- 7. honest empty and error states ---------------------------------------------------------


def test_a_dead_daemon_is_named_not_hidden(stack: Stack, page: Page) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with UiServer(stack.workdir / "ui-dead", dead, tsdb_url=stack.tsdb_url) as ui:
        said = f"Cannot reach the OpenAnomaly daemon at {dead}"
        open_app(page, ui.url, said)
        expect(page.locator('[data-testid="stAlertContentError"]')).to_contain_text(said)
        assert page.locator('[data-testid="stTable"]').count() == 0
        screenshot(page, stack.shots / "overview-dead-daemon.png")
        go_to(page, "Playground")
        expect(page).to_have_url(re.compile(r"/playground$"))
        expect(page.get_by_role("heading", name="Playground", exact=True)).to_be_visible()
        expect(page.locator('[data-testid="stAlertContentError"]')).to_contain_text(said)
        screenshot(page, stack.shots / "playground-dead-daemon.png")
        page.goto("about:blank")  # not left polling a UI that is about to stop


def test_no_pipelines_and_no_token_are_said_plainly(stack: Stack, page: Page) -> None:
    """A daemon whose pipelines.d holds only a broken file, and no API token: the overview
    says nothing is loaded and names the file's problem; saving says the token is missing."""
    daemon = Daemon(stack.workdir / "daemon-empty", stack.tsdb_url, token=None)
    broken = daemon.pipelines_dir / "broken.yaml"
    broken.write_text(pipeline_yaml("ui-broken", METRIC).replace("step: 1m", "step: soon"))
    _, problems = parse_pipeline_text(broken.read_text(), str(broken), model_catalog)
    assert len(problems) == 1
    problem = problems[0]
    try:
        daemon.start()
        assert daemon.json("/api/v1/pipelines")["pipelines"] == []
        with UiServer(stack.workdir / "ui-empty", daemon.url, tsdb_url=stack.tsdb_url) as ui:
            open_app(page, ui.url, "No pipelines loaded")
            warning = page.locator('[data-testid="stAlertContentWarning"]')
            expect(warning).to_have_text(
                f"{problem.where}:{problem.line}: {problem.field}: {problem.reason}"
            )
            assert page.locator('[data-testid="stTable"]').count() == 0
            screenshot(page, stack.shots / "overview-empty.png")

            playground(page)
            enter_pipeline(page, pipeline_yaml("ui-unsaved", METRIC), "ui-unsaved")
            # Saving is off, and the page says that the token is what it takes.
            save = page.get_by_role("button", name="Save to pipelines.d", exact=True)
            expect(save).to_be_disabled()
            captions = page.locator('[data-testid="stCaptionContainer"]')
            expect(captions.filter(has_text="Saving needs http.api_token")).to_have_count(1)
            screenshot(page, stack.shots / "playground-no-token.png")
            page.goto("about:blank")  # not left polling a UI that is about to stop
        assert not (daemon.pipelines_dir / "ui-unsaved.yaml").exists()
    finally:
        daemon.close()
