"""`replay_job`: the loop over a range of history, launchable from the UI's launchpad (and `python -m
alphapulse_assets.replay START END`)."""

import dagster as dg

from alphapulse_assets.alerts import REPLAY_TAG
from alphapulse_assets.instance import code_location
from alphapulse_assets.partitions import parse_partition_hour
from alphapulse_assets.replay.assets import loop_performance
from alphapulse_assets.replay.driver import DAILY, Replay
from alphapulse_assets.runner import run_job
from alphapulse_assets.storage.warehouse import Warehouse
from alphapulse_assets.training.resources import ModelPolicy

POLICY_FIGURES = ("sharpe", "max_drawdown", "total_return")


class ReplayConfig(dg.Config):
    """The hours replayed, inclusive, as partition keys (YYYY-MM-DD-HH:MM, UTC), the retrain cadence, how many
    scheduled retrains are computed ahead of the loop at once (0: the loop retrains itself; the decisions are the
    same either way) and where: "processes" beside the replay's, or "queue", runs of retrain_job submitted to the
    instance's run queue and launched by its run launcher (a Kubernetes Job each under the Helm chart). Every other
    setting is the loop's own (ALPHAPULSE_*)."""

    start: str
    end: str
    retrain_every_hours: int = DAILY
    retrain_workers: int = 0
    retrain_launch: str = "processes"


def _loop_summary(instance: dg.DagsterInstance) -> list[str]:
    event = instance.get_latest_materialization_event(loop_performance.key)
    metadata = event.asset_materialization.metadata if event and event.asset_materialization else {}

    def value(key: str):
        entry = metadata.get(key)
        return getattr(entry, "value", None)

    lines = [
        f"loop over {value('range')}: Sharpe {value('sharpe'):.2f}, max drawdown {value('max_drawdown'):.1%}, "
        f"return {value('total_return'):+.1%}, turnover {value('turnover'):.3f}, "
        f"in market {value('time_in_market'):.0%}, DSR {value('dsr'):.2f} over {value('dsr_trials')} trials",
        f"  {value('n_retrains')} retrains, {value('n_promotions')} promotions, {value('n_rollbacks')} rollbacks, "
        f"{value('drift_alarms')} critical drift reports, {value('drift_retrains')} drift retrains",
    ]
    for name, label in (("naive", "newest model"), ("baseline", "rules baseline"), ("buy_and_hold", "buy and hold")):
        lines.append(
            f"  {label}: Sharpe {value(f'{name}_sharpe'):.2f}, max drawdown {value(f'{name}_max_drawdown'):.1%}, "
            f"return {value(f'{name}_total_return'):+.1%}"
        )
    return lines


@dg.op(description="Replay the loop over [start, end] in time order, then report loop_performance over it.")
def replay(context: dg.OpExecutionContext, config: ReplayConfig, warehouse: Warehouse, policy: ModelPolicy) -> None:
    def say(line: str) -> None:
        print(line, flush=True)
        context.log.info(line)

    # The replay drives runs of the code location's own jobs, with their resources. A run executed in-process (the
    # CLI, tests) has no repository on its context, so the code location is built here from the same environment
    # every process of it reads (for a run the daemon launched, that is the repository it runs in).
    jobs = code_location()
    start, end = parse_partition_hour(config.start, "start"), parse_partition_hour(config.end, "end")
    driver = Replay(
        jobs,
        context.instance,
        warehouse,
        policy,
        start,
        end,
        config.retrain_every_hours,
        replay_id=context.run_id,
        say=say,
        retrain_workers=config.retrain_workers,
        retrain_launch=config.retrain_launch,
        replay_run=context.dagster_run,
    )
    report = driver.run()
    say(f"replay done: {len(report.runs)} runs")
    outcome = run_job(
        jobs,
        context.instance,
        "loop_performance_job",
        run_config={"ops": {"loop_performance": {"config": {"start": config.start, "end": config.end}}}},
        tags={REPLAY_TAG: context.run_id},
        label="loop_performance",
    )
    if not outcome.success:
        raise dg.Failure(f"loop_performance failed: {outcome.error}", allow_retries=False)
    for line in _loop_summary(context.instance):
        say(line)


@dg.job(
    description=(
        "The loop over a range of history, point in time: data, scheduled and drift-triggered retrains, promotions, "
        "rollbacks, predictions, shadow and drift reports in time order, then loop_performance. Config: start, end "
        "(YYYY-MM-DD-HH:MM), retrain_every_hours (24), retrain_workers (0), retrain_launch (processes | queue)."
    ),
    tags={"alphapulse/kind": "replay"},
)
def replay_job():
    replay()
