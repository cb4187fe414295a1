"""Plots and reports reach people's browsers: `python -m alphapulse_assets.reports` serves the object store's
plots/ and reports/ keys (and nothing else), and an asset's plot metadata is a short image link the Dagster UI
renders inline when ALPHAPULSE_REPORTS_URL says where that server is."""

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from services import free_port

from alphapulse_assets.metadata import date_axis, new_figure, report_link, stored_plot
from alphapulse_assets.settings import ConfigError, Settings
from alphapulse_assets.storage.object_store import LocalObjectStore

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 5000  # longer than the UI inlines when embedded as base64


def fetch(url: str, method: str = "GET") -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


@pytest.fixture
def server(tmp_path):
    """The module as a user starts it, on a store holding a plot, a report and things that are not for browsers."""
    store = LocalObjectStore(root=str(tmp_path / "objects"))
    store.put_bytes("plots/model_evaluation/v1/equity_curve.png", PNG)
    store.put_bytes("reports/drift/20250313T23.html", b"<html>drift</html>")
    store.put_bytes("serving/promoted_model.json", b"{}")
    store.put_bytes("alerts/one.json", b"{}")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "alphapulse_assets.reports", "--port", str(port)],
        cwd=REPO,
        env={**os.environ, "ALPHAPULSE_HOME": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, process.stdout.read().decode()
        try:
            fetch(base + "/")
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    yield base, store
    process.terminate()  # SIGTERM, as the demo stops it: it ends at once
    process.wait(timeout=10)


def test_plots_and_reports_are_served_and_nothing_else(server):
    base, _ = server
    status, content_type, body = fetch(f"{base}/plots/model_evaluation/v1/equity_curve.png")
    assert (status, content_type, body) == (200, "image/png", PNG)
    status, content_type, body = fetch(f"{base}/reports/drift/20250313T23.html")
    assert status == 200 and content_type == "text/html" and body == b"<html>drift</html>"
    assert fetch(f"{base}/plots/model_evaluation/v1/equity_curve.png", "HEAD")[:2] == (200, "image/png")
    for path in (
        "/serving/promoted_model.json",
        "/alerts/one.json",
        "/plots/../serving/promoted_model.json",
        "/plots/%2E%2E/serving/promoted_model.json",
        "/plots/missing.png",
        "/",
    ):
        assert fetch(base + path)[0] == 404, path
    assert b"only plots/ and reports/" in fetch(f"{base}/serving/promoted_model.json")[2]


def test_a_plot_is_a_short_image_link_where_browsers_reach_the_store(tmp_path):
    served = LocalObjectStore(root=str(tmp_path / "a"), public_url="http://127.0.0.1:3001/")
    markdown = stored_plot(served, "plots/x/equity.png", PNG, "equity").value
    # Short enough for the asset page to render it without a click (the UI inlines markdown under 1,000 chars).
    assert markdown == "![equity](http://127.0.0.1:3001/plots/x/equity.png)" and len(markdown) < 1000
    assert served.get_bytes("plots/x/equity.png") == PNG
    assert report_link(served, "reports/drift/h.html").value == "http://127.0.0.1:3001/reports/drift/h.html"
    # Keys no browser is to read get no browser URL.
    assert served.browser_url("serving/promoted_model.json") is None

    unserved = LocalObjectStore(root=str(tmp_path / "b"))
    embedded = stored_plot(unserved, "plots/x/equity.png", PNG, "equity").value
    assert embedded.startswith("![equity](data:image/png;base64,") and unserved.exists("plots/x/equity.png")
    assert report_link(unserved, "reports/drift/h.html").value == unserved.uri("reports/drift/h.html")


def test_the_reports_url_setting_is_an_http_url():
    assert Settings.from_env({"ALPHAPULSE_REPORTS_URL": "http://plots.internal:3001"}).reports_url
    with pytest.raises(ConfigError, match="ALPHAPULSE_REPORTS_URL"):
        Settings.from_env({"ALPHAPULSE_REPORTS_URL": "plots.internal:3001"})


@pytest.mark.parametrize("hours", [72, 24 * 90, 24 * 365 * 3])
def test_date_labels_on_a_plot_never_overlap(hours):
    """Three days to three years of hours on a plot as wide as the asset page shows it: a few labels, apart."""
    figure, axis = new_figure()
    start = datetime(2025, 1, 1, tzinfo=UTC)
    axis.plot([start + timedelta(hours=h) for h in range(hours)], np.arange(hours))
    date_axis(axis)
    figure.canvas.draw()
    boxes = [label.get_window_extent() for label in axis.get_xticklabels() if label.get_text()]
    assert len(boxes) >= 3
    assert all(left.x1 < right.x0 for left, right in zip(boxes, boxes[1:], strict=False))
    plt.close(figure)
