"""Metadata a person wants to look at in the UI: previews and plots, made the same way everywhere."""

from __future__ import annotations

import base64
import io

import dagster as dg
import polars as pl


def table_preview(frame: pl.DataFrame, rows: int = 10) -> dg.MetadataValue:
    head = frame.head(rows)
    header = "| " + " | ".join(head.columns) + " |"
    rule = "| " + " | ".join("---" for _ in head.columns) + " |"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in head.iter_rows()]
    return dg.MetadataValue.md("\n".join([header, rule, *body]))


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value).replace("|", "\\|")


def figure_png(figure) -> bytes:
    """A matplotlib figure as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    # The figure's own size (its constrained layout keeps labels inside): "tight" bounding boxes grow with the
    # longest label, and a plot wider than the page's cell is cut off.
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    return buffer.getvalue()


def png_bytes_markdown(png: bytes, alt: str) -> dg.MetadataValue:
    """PNG bytes embedded in markdown metadata (the UI renders them inline)."""
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def stored_plot(object_store, key: str, png: bytes, alt: str) -> dg.MetadataValue:
    """A plot written to the object store at `key` (under plots/), as metadata: a short image link the asset page
    renders without a click where browsers can reach the store (ALPHAPULSE_REPORTS_URL, alphapulse_assets/reports.py),
    else the PNG embedded (the UI shows it behind "[Show Markdown]": its markdown is too long to inline)."""
    object_store.put_bytes(key, png)
    url = object_store.browser_url(key)
    return dg.MetadataValue.md(f"![{alt}]({url})") if url else png_bytes_markdown(png, alt)


def report_link(object_store, key: str) -> dg.MetadataValue:
    """A link to a stored report (under reports/): over HTTP where browsers can reach it, else its store URI."""
    return dg.MetadataValue.url(object_store.browser_url(key) or object_store.uri(key))


def date_axis(axis) -> None:
    """Dates on the x axis that do not overlap at any span: as many ticks as fit, each labelled only with what
    changed since the last (year, month, day, hour)."""
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
    axis.xaxis.set_major_locator(locator)
    axis.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


# At the 80 dpi of `figure_png`, 6 inches are 480 pixels: the width the asset page's metadata cell shows whole in
# a 1,600-pixel-wide browser window (it scrolls sideways in a narrower one). tests/test_ui_browser.py measures it.
PLOT_WIDTH_INCHES = 6.0


def new_figure(width: float = PLOT_WIDTH_INCHES, height: float = 3.2):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), layout="constrained")


def partition_metadata(context: dg.AssetExecutionContext, light: dict, heavy: dict) -> dict:
    """Metadata for a (possibly multi-partition) materialization.

    Dagster copies a range run's materialization metadata into every partition's event: a plot on an 80-day
    backfill would be stored 1,920 times, and a row count would claim the whole range's rows for each hour. A
    single-hour run carries everything. In a range, each partition carries only the range and its row count, and
    the full metadata is logged once, as an observation of the range's last partition.
    """
    keys = context.partition_key_range
    if keys.start == keys.end:
        return light | heavy
    span = f"{keys.start} .. {keys.end}"
    context.log_event(
        dg.AssetObservation(asset_key=context.asset_key, partition=keys.end, metadata={"range": span, **light, **heavy})
    )
    return {"range": span, "range_row_count": light.get("dagster/row_count")}
