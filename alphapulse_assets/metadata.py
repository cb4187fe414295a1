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
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def png_bytes_markdown(png: bytes, alt: str) -> dg.MetadataValue:
    """PNG bytes embedded in markdown metadata (the UI renders them inline)."""
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def png_markdown(figure, alt: str) -> dg.MetadataValue:
    """A matplotlib figure embedded as a PNG in markdown metadata."""
    return png_bytes_markdown(figure_png(figure), alt)


def new_figure(width: float = 8.0, height: float = 3.0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


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
