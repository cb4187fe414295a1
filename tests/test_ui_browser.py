"""The Dagster UI in a real browser: Debian's chromium, headless, driven by Playwright (which never downloads a
browser here). A small instance (13 days of data, one retrain that promotes, one hourly run) is served by
`dagster-webserver` with the plots server beside it, as `make demo` serves its own. The test looks where a person
looks and keeps a screenshot of each page (in $ALPHAPULSE_UI_SCREENSHOTS, else the test's temporary directory):

- the asset graph: every group of the graph is there;
- `model_evaluation`: its equity curve and feature importance render in the page without a click, loaded from the
  plots server and whole in a 1,600-pixel-wide window; its Checks tab lists every evaluation gate;
- `promotion_decision`'s checks: the champion comparison, the shadow record, and the blocking check that guards
  `promoted_model`;
- `drift_report`: its report link opens the report over HTTP;
- the runs list: the three runs.

Skipped where chromium cannot be had (not installed and no apt-get as root) or Playwright is missing.
"""

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import dagster as dg
import pytest
from services import chromium, free_port, stop_group

from alphapulse_assets.definitions import build_definitions
from alphapulse_assets.instance import write_instance_config
from alphapulse_assets.runner import run_job
from alphapulse_assets.settings import Settings
from alphapulse_assets.training.gates import EVALUATION_GATES

playwright = pytest.importorskip("playwright.sync_api")

REPO = Path(__file__).resolve().parents[1]
FIRST, LAST, DECISION = "2025-03-01-00:00", "2025-03-13-23:00", "2025-03-12-23:00"
WINDOW = {"width": 1600, "height": 1100}
GROUPS = ("market", "news", "features", "training", "promotion", "signals", "monitoring", "replay")


def _status(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def _wait(url: str, process: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, log.read_text(errors="replace")[-3000:]
        try:
            _status(url)
            return
        except OSError:
            assert time.monotonic() < deadline, f"{url} did not answer"
            time.sleep(0.5)


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    browser_path = chromium()
    if browser_path is None:
        pytest.skip("no chromium: apt-get install chromium (Debian's), then run again")
    home = tmp_path_factory.mktemp("ui")
    ui_port, reports_port = free_port(), free_port()
    reports_url = f"http://127.0.0.1:{reports_port}"
    env = {
        **os.environ,
        "ALPHAPULSE_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "ALPHAPULSE_REPORTS_URL": reports_url,
    }
    write_instance_config(home / "dagster")
    defs = build_definitions(Settings.from_env(env))
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        for job, where in (
            ("data_job", {"partition_range": (FIRST, LAST)}),
            ("retrain_job", {"partition_key": DECISION}),
            ("hourly_job", {"partition_key": LAST}),
        ):
            outcome = run_job(defs, instance, job, progress=False, **where)
            assert outcome.success, outcome.error
    bin_dir = Path(sys.executable).parent
    commands = {
        "webserver": [str(bin_dir / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1"]
        + ["-p", str(ui_port)],
        "reports": [sys.executable, "-m", "alphapulse_assets.reports", "--port", str(reports_port)],
    }
    processes = {}
    try:
        for name, command in commands.items():
            log = home / f"{name}.log"
            processes[name] = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
            )
        _wait(f"http://127.0.0.1:{ui_port}/server_info", processes["webserver"], home / "webserver.log")
        _wait(f"{reports_url}/", processes["reports"], home / "reports.log")
        shots = Path(os.environ.get("ALPHAPULSE_UI_SCREENSHOTS") or home / "screenshots")
        shots.mkdir(parents=True, exist_ok=True)
        with playwright.sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
            page = browser.new_page(viewport=WINDOW)
            # A first visit to a local UI opens a "Join the Dagster community" dialog over the page, at a moment of
            # its own; the UI remembers a dismissal under this key.
            page.add_init_script("window.localStorage.setItem('communityNux', JSON.stringify('1'))")
            yield Ui(page, f"http://127.0.0.1:{ui_port}", reports_url, shots)
            browser.close()
    finally:
        for process in processes.values():
            stop_group(process)


class Ui:
    def __init__(self, page, base: str, reports_url: str, shots: Path):
        self.page, self.base, self.reports_url, self.shots = page, base, reports_url, shots

    def open(self, path: str, ready: str) -> None:
        """Open a page and wait for `ready` text on it (the UI loads its data after the page). Attached, not
        necessarily visible: the UI shortens long names to fit, and keeps the whole name in a hidden element."""
        self.page.goto(self.base + path, wait_until="domcontentloaded")
        self.page.get_by_text(ready, exact=True).first.wait_for(state="attached", timeout=60_000)

    def assert_shown(self, names) -> None:
        for name in names:
            assert self.page.get_by_text(name, exact=True).count(), f"{name} is not on {self.page.url}"

    def shoot(self, name: str) -> None:
        self.page.wait_for_timeout(500)
        self.page.screenshot(path=str(self.shots / f"{name}.png"))


# Pages that must list names: the graph's groups, model_evaluation's checks (one per gate), the runs.
LISTS = {
    "asset_graph": ("/asset-groups", GROUPS),
    "model_evaluation_checks": ("/assets/model_evaluation?view=checks", tuple(EVALUATION_GATES)),
    "runs": ("/runs", ("data_job", "retrain_job", "hourly_job")),
}


@pytest.mark.parametrize("shot", LISTS)
def test_a_page_lists_what_it_should(ui, shot):
    path, names = LISTS[shot]
    ui.open(path, names[-1])
    ui.assert_shown(names)
    ui.shoot(shot)


def test_model_evaluation_plots_render_in_the_page_whole(ui):
    ui.open("/assets/model_evaluation", "equity_curve")
    for label in ("equity_curve", "feature_importance"):
        cell = ui.page.locator("tr", has=ui.page.get_by_text(label, exact=True)).first
        image = cell.locator("img").first
        image.wait_for(timeout=30_000)
        assert image.get_attribute("src").startswith(f"{ui.reports_url}/plots/model_evaluation/"), label
        image.scroll_into_view_if_needed()
        ui.page.wait_for_function("e => e.complete && e.naturalWidth > 0", arg=image.element_handle())
        # Whole: the image ends inside the scrolling panel that holds the metadata table.
        overflow = image.evaluate(
            """e => { let panel = e.parentElement;
                      while (panel && getComputedStyle(panel).overflowX === 'visible') panel = panel.parentElement;
                      return e.getBoundingClientRect().right - panel.getBoundingClientRect().right; }"""
        )
        assert overflow <= 0, f"{label} runs {overflow:.0f} px past the panel"
        if label == "equity_curve":
            ui.shoot("model_evaluation_plots")


def test_promotion_decision_checks_include_the_blocking_guard(ui):
    ui.open("/assets/promotion_decision?view=checks", "new_champion_passed_its_gates")
    ui.assert_shown(("champion_comparison", "shadow_record"))
    ui.page.get_by_text("new_champion", exact=False).filter(visible=True).first.click()
    ui.page.get_by_text("This is a blocking asset check", exact=False).first.wait_for(timeout=30_000)
    ui.shoot("promotion_decision_checks")


def test_the_drift_report_link_opens_the_report(ui):
    ui.open("/assets/drift_report", "evidently_report")
    link = ui.page.locator(f"a[href^='{ui.reports_url}/reports/drift/']").first
    link.scroll_into_view_if_needed()
    ui.shoot("drift_report")
    assert _status(link.get_attribute("href")) == (200, "text/html")
