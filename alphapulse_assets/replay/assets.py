from datetime import datetime, timedelta

import dagster as dg
import numpy as np
import polars as pl

from alphapulse_assets.features.assets import features
from alphapulse_assets.market.assets import prices
from alphapulse_assets.market.resources import MarketSource
from alphapulse_assets.metadata import date_axis, figure_png, new_figure, report_link, stored_plot, table_preview
from alphapulse_assets.monitoring.assets import drift_report
from alphapulse_assets.partitions import parse_partition_hour, partition_key
from alphapulse_assets.promotion.assets import promotion_decision
from alphapulse_assets.promotion.gates import PROMOTE, PROMOTE_CHALLENGER, ROLLBACK
from alphapulse_assets.promotion.timeline import DECISIONS_TABLE, decision_timeline, governing, in_force, segments
from alphapulse_assets.replay.performance import (
    FIGURES,
    POLICIES,
    champion_segments,
    paired_t,
    policy_figures,
    system_dsr,
    with_policy_returns,
)
from alphapulse_assets.retries import STORAGE_RETRY_POLICY, NotRetryable
from alphapulse_assets.signals.assets import baseline_predictions, predictions, rule_signals
from alphapulse_assets.storage.object_store import ObjectStore
from alphapulse_assets.storage.warehouse import WAREHOUSE_WRITERS, Warehouse
from alphapulse_assets.training.assets import trained_model
from alphapulse_assets.training.dataset import labelled_rows
from alphapulse_assets.training.models import load_model
from alphapulse_assets.training.resources import ModelPolicy

HOUR = timedelta(hours=1)
TABLE = "loop_performance"


class LoopPerformanceConfig(dg.Config):
    """The hours reported, inclusive, as partition keys (YYYY-MM-DD-HH:MM, UTC). Empty: from the first to the last
    hour with predictions."""

    start: str = ""
    end: str = ""


def _hour(value: str) -> datetime:
    return parse_partition_hour(value, "loop_performance config")


def _range(config: LoopPerformanceConfig, warehouse: Warehouse) -> tuple[datetime, datetime]:
    if config.start and config.end:
        return _hour(config.start), _hour(config.end)
    if not warehouse.table_exists("predictions"):
        raise NotRetryable("no predictions yet: give start and end, or materialize predictions (or run a replay)")
    bounds = warehouse.query("select min(ts), max(ts) from predictions").row(0)
    if bounds[0] is None:
        raise NotRetryable("the predictions table is empty: give start and end, or run a replay")
    return (_hour(config.start) if config.start else bounds[0]), (_hour(config.end) if config.end else bounds[1])


def _served_signals(warehouse: Warehouse, served: pl.DataFrame, start: datetime, stop: datetime) -> pl.DataFrame:
    """The loop's signal per symbol-hour: what `predictions` recorded the API served, the champion in force or,
    without one, the rules baseline (0 where nothing was recorded)."""
    recorded = (
        warehouse.read_window("predictions", start, stop) if warehouse.table_exists("predictions") else pl.DataFrame()
    )
    recorded = (
        recorded.select("ts", "symbol", "model_version", "signal", "probability_up")
        if recorded.height
        else (
            pl.DataFrame(
                schema={
                    "ts": pl.Datetime("us", "UTC"),
                    "symbol": pl.String,
                    "model_version": pl.String,
                    "signal": pl.Int8,
                    "probability_up": pl.Float64,
                }
            )
        )
    )
    expected = served.filter(pl.col("champion_version").is_not_null())
    missing = expected.join(recorded.select("ts").unique(), on="ts", how="anti")
    if missing.height:
        raise NotRetryable(
            f"{missing.height} hours had a champion in force but no predictions (the first: "
            f"{missing['ts'].min():%Y-%m-%d-%H:%M}): materialize predictions over them (signals_job, or the replay)"
        )
    # A baseline row (no model) belongs to an hour without a champion, a model's row to that model's hours.
    stale = recorded.join(served.select("ts", "champion_version"), on="ts").filter(
        ~pl.col("model_version").eq_missing(pl.col("champion_version"))
    )
    if stale.height:
        raise NotRetryable(
            f"{stale.height} prediction rows were made by a model that was not in force at their hour (the first: "
            f"{stale['ts'].min():%Y-%m-%d-%H:%M}, {stale['model_version'][0]}): they predate point-in-time "
            "scoring; materialize predictions over the range again (signals_job)"
        )
    return recorded


def _newest_model_signals(
    warehouse: Warehouse, object_store: ObjectStore, rows: pl.DataFrame, start, stop
) -> pl.DataFrame:
    """The naive policy: every hour scored by the newest model trained before it, whatever its gates said."""
    out = pl.DataFrame(
        schema={
            "ts": pl.Datetime("us", "UTC"),
            "symbol": pl.String,
            "naive_version": pl.String,
            "naive_signal": pl.Int8,
        }
    )
    if not warehouse.table_exists("trained_model"):
        return out
    models = warehouse.query("select * from trained_model where ts < ? order by ts", [stop])
    if models.is_empty():
        return out
    newest = governing(models.select("ts", pl.col("model_version").alias("naive_version")), start, stop)
    frames = [out]
    records = {r["model_version"]: r for r in models.iter_rows(named=True)}
    for version, first, end in segments(newest, "naive_version"):
        record = records[version]
        part = rule_signals(
            warehouse,
            load_model(object_store, record),
            record["feature_version"],
            rows.filter((pl.col("ts") >= first) & (pl.col("ts") < end)),
            first,
        )
        frames.append(
            part.select(
                "ts",
                "symbol",
                pl.lit(version).alias("naive_version"),
                pl.col("position").cast(pl.Int8).alias("naive_signal"),
            )
        )
    return pl.concat(frames, how="vertical_relaxed")


def _baseline_signals(rows: pl.DataFrame) -> pl.Series:
    """The API's rules baseline on each row; flat where it cannot answer (as the API would fall through)."""
    return baseline_predictions(rows)["signal"].alias("baseline_signal")


def _count(warehouse: Warehouse, table: str, where: str, params: list) -> int:
    if not warehouse.table_exists(table):
        return 0
    return int(warehouse.query(f"select count(*) from {table} where {where}", params).item())


def _trial_sharpes(warehouse: Warehouse, start: datetime, stop: datetime, served_versions: list[str]) -> np.ndarray:
    """Per-hour walk-forward Sharpe of every trial (once per trading rule it was tried with) that shaped what the
    loop served in the range: the searches and refits of every retrain in it, of the retrains that made the
    champions that served in it, and the searches those refitted configurations came from."""
    if not warehouse.table_exists("tuning_trials"):
        return np.array([])
    models = warehouse.query("select * from trained_model")
    chosen = models.filter(
        ((pl.col("ts") >= start) & (pl.col("ts") < stop)) | pl.col("model_version").is_in(served_versions)
    )
    hours = set(chosen["ts"].to_list())
    if "tuned_at" in chosen.columns:
        hours |= {t for t in chosen["tuned_at"].to_list() if t is not None}
    if not hours:
        return np.array([])
    trials = warehouse.read_keys("tuning_trials", "ts", sorted(hours)).filter(
        pl.col("state").is_in(["complete", "refit"])
    )
    if "rule_sharpes_hourly" not in trials.columns:  # trials from before trading rules were chosen
        return trials["cv_sharpe_hourly"].to_numpy()
    # A row per trial, a column per trading rule it was tried with (rows from before rules were chosen had one).
    rows = [
        rules if rules is not None else [single]
        for rules, single in trials.select("rule_sharpes_hourly", "cv_sharpe_hourly").iter_rows()
    ]
    width = max((len(r) for r in rows), default=0)
    return np.array([list(r) + [np.nan] * (width - len(r)) for r in rows], dtype=float)


def _equity_plot(curves: dict[str, pl.DataFrame], decisions: pl.DataFrame) -> bytes:
    figure, axis = new_figure(height=4.0)
    # The loop is drawn last and thickest: where it serves the newest model, the two curves coincide.
    styles = {
        "buy_and_hold": {"color": "tab:orange", "linewidth": 1.0},
        "baseline": {"color": "tab:green", "linewidth": 1.0},
        "naive": {"color": "tab:purple", "linewidth": 1.0, "linestyle": "--"},
        "loop": {"color": "tab:blue", "linewidth": 2.0},
    }
    for name, style in styles.items():
        hourly = curves[name]
        axis.plot(hourly["ts"].to_list(), np.exp(np.cumsum(hourly["net"].to_numpy())), label=POLICIES[name], **style)
    marks = {
        PROMOTE: ("black", ":", "promotion"),
        PROMOTE_CHALLENGER: ("black", ":", "promotion"),
        ROLLBACK: ("tab:red", "-.", "rollback"),
    }
    labelled = set()
    for ts, action in decisions.select("ts", "action").iter_rows():
        if action in marks:
            colour, line, label = marks[action]
            axis.axvline(ts, color=colour, linestyle=line, linewidth=1, label=None if label in labelled else label)
            labelled.add(label)
    date_axis(axis)
    axis.set_ylabel("equity (start = 1), after costs")
    axis.set_title("what the loop served against three references")
    axis.legend(loc="upper left", fontsize=8)
    return figure_png(figure)


@dg.asset(
    retry_policy=STORAGE_RETRY_POLICY,
    pool=WAREHOUSE_WRITERS,
    group_name="replay",
    kinds={"python", "duckdb"},
    deps=[predictions, promotion_decision, trained_model, drift_report, features, prices],
)
def loop_performance(
    context: dg.AssetExecutionContext,
    config: LoopPerformanceConfig,
    warehouse: Warehouse,
    object_store: ObjectStore,
    policy: ModelPolicy,
    market: MarketSource,
) -> dg.MaterializeResult:
    """What the loop served hour by hour over a range and what it earned after costs, beside three references."""
    first, last = _range(config, warehouse)
    if last < first:
        raise NotRetryable(f"loop_performance: end {partition_key(last)} comes before start {partition_key(first)}")
    stop = last + HOUR
    # One hour before the range: its positions are what the range's first trades start from.
    lead = first - HOUR
    feature_rows = warehouse.read_window("features", lead, stop)
    outcomes = labelled_rows(
        feature_rows,
        warehouse.read_window("prices", lead, stop + timedelta(hours=policy.horizon_hours)),
        market.symbols,
        lead,
        stop,
        policy.horizon_hours,
        policy.dead_band,
    )
    timeline = decision_timeline(warehouse)
    served = in_force(timeline, lead, stop)
    recorded = _served_signals(warehouse, served, lead, stop)
    naive = _newest_model_signals(warehouse, object_store, outcomes, lead, stop)
    frame = (
        outcomes.select("ts", "symbol", "next_return", "ret_24h", "rv_24h", "news_sent_decayed")
        .join(served.select("ts", "champion_version"), on="ts", how="left")
        .join(recorded, on=["ts", "symbol"], how="left")
        .join(naive, on=["ts", "symbol"], how="left")
        .with_columns(
            pl.col("signal").fill_null(0).cast(pl.Int8).alias("loop_signal"),
            pl.col("naive_signal").fill_null(0).cast(pl.Int8),
            pl.lit(1, dtype=pl.Int8).alias("buy_and_hold_signal"),
        )
        .sort("ts", "symbol")
    )
    frame = frame.with_columns(_baseline_signals(frame))
    frame = with_policy_returns(frame, policy.cost_bps).filter(pl.col("ts") >= first)
    if frame.is_empty():
        raise NotRetryable(
            f"no symbol-hour in {partition_key(first)} .. {partition_key(last)} has features and a known outcome"
        )
    table = frame.select(
        "ts",
        "symbol",
        "champion_version",
        pl.col("loop_signal").alias("served_signal"),
        "probability_up",
        "next_return",
        pl.col("loop_net").alias("net_return"),
        pl.col("buy_and_hold_net").alias("buy_and_hold_net_return"),
        "baseline_signal",
        pl.col("baseline_net").alias("baseline_net_return"),
        "naive_version",
        "naive_signal",
        pl.col("naive_net").alias("naive_net_return"),
        pl.lit(policy.cost_bps).alias("cost_bps"),
    )
    warehouse.replace_window(TABLE, table, first, stop)

    figures, curves = {}, {}
    for name in POLICIES:
        figures[name], curves[name] = policy_figures(frame, name)
    decisions = timeline.filter((pl.col("ts") >= first) & (pl.col("ts") <= last))
    in_range = "ts >= ? and ts <= ?"
    window = [first, last]
    served_versions = sorted(v for v in frame["champion_version"].unique().to_list() if v is not None)
    dsr, n_trials, trial_variance = system_dsr(
        curves["loop"]["net"].to_numpy(), _trial_sharpes(warehouse, first, stop, served_versions)
    )
    loop = figures["loop"]
    summary_rows = [{"policy": POLICIES[name], **figures[name]} for name in POLICIES]
    plot_key = f"plots/loop_performance/{first:%Y%m%dT%H}-{last:%Y%m%dT%H}.png"
    equity_curve = stored_plot(object_store, plot_key, _equity_plot(curves, decisions), "equity curves of the policies")
    segment_table = champion_segments(frame)
    context.log.info(
        f"{partition_key(first)} .. {partition_key(last)}: loop Sharpe {loop['sharpe']:.2f}, naive "
        f"{figures['naive']['sharpe']:.2f}, baseline {figures['baseline']['sharpe']:.2f}, buy and hold "
        f"{figures['buy_and_hold']['sharpe']:.2f}"
    )
    return dg.MaterializeResult(
        metadata={
            "range": f"{partition_key(first)} .. {partition_key(last)}",
            "dagster/row_count": table.height,
            **{key: loop[key] for key in FIGURES if key != "n_hours"},
            "n_hours": int(loop["n_hours"]),
            "n_retrains": _count(warehouse, "trained_model", in_range, window),
            "n_promotions": int(decisions["action"].is_in([PROMOTE, PROMOTE_CHALLENGER]).sum()),
            "n_rollbacks": int((decisions["action"] == ROLLBACK).sum()),
            "drift_alarms": _count(warehouse, "drift_summary", f"{in_range} and drift_status = 'critical'", window),
            "drift_retrains": _count(
                warehouse, DECISIONS_TABLE, f"{in_range} and trigger = 'drift_retrain_sensor'", window
            ),
            # Does gating add value? The loop against always deploying the newest model, hour by hour.
            "loop_vs_naive_t": paired_t(curves["loop"]["net"].to_numpy(), curves["naive"]["net"].to_numpy()),
            "dsr": dsr,
            "dsr_trials": n_trials,
            "dsr_trial_sharpe_variance": trial_variance,
            "hours_without_champion": int(served.filter(pl.col("ts") >= first)["champion_version"].null_count()),
            **{
                f"{name}_{key}": figures[name][key]
                for name in POLICIES
                if name != "loop"
                for key in ("sharpe", "max_drawdown", "total_return")
            },
            "policies": table_preview(pl.DataFrame(summary_rows), rows=len(summary_rows)),
            "equity_curve": equity_curve,
            "equity_curve_png": report_link(object_store, plot_key),
            "champion_segments": table_preview(segment_table, rows=50),
            "cost_bps": policy.cost_bps,
        }
    )


loop_performance_job = dg.define_asset_job(
    "loop_performance_job",
    selection=dg.AssetSelection.assets(loop_performance),
    description="What the loop served and earned over a range (config: start, end), beside three references.",
)
