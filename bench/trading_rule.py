"""What choosing the trading rule in the folds buys, and what it costs: the fixed rule (band 0.02, every hour's own
probability) against the rule chosen on the walk-forward predictions, on held-out days, at several trading costs.

    uv run python bench/trading_rule.py [--seeds 0 1 2] [--costs 2 20] [--market slow_signal|lead_lag|random_walk]

Each run goes through the asset steps (`alphapulse_assets.training.pipeline`): the full feature catalog, XGBoost
tuned on purged walk-forward folds (6 trials, 4 folds, 150 days, the last 30 held out), the rule chosen among the
default 25, the refit, the evaluation and its gates. Prints per run the chosen rule, both rules' held-out net
Sharpe, gross Sharpe and turnover, the DSR and the gates' verdict, and the rule scan's share of the tuning time
(timed in the same process, so a ratio, not a wall-clock figure).
"""

import argparse
import time
from datetime import UTC, datetime, timedelta

from alphapulse_assets.features.catalog import FEATURE_NAMES
from alphapulse_assets.thresholds import GateThresholds
from alphapulse_assets.training import tuning
from alphapulse_assets.training.dataset import training_windows
from alphapulse_assets.training.evaluation import EvaluationConfig
from alphapulse_assets.training.families import Trainer
from alphapulse_assets.training.metrics import backtest
from alphapulse_assets.training.pipeline import train_and_evaluate
from alphapulse_assets.training.synthetic import (
    FOLLOWER,
    LEADER,
    lead_lag_market,
    random_walk_market,
    slow_signal_market,
)
from alphapulse_contract.scoring import FIXED_RULE

START = datetime(2024, 1, 1, tzinfo=UTC)
MARKETS = {
    "slow_signal": lambda start, hours, seed: slow_signal_market(start, hours, seed, strength=0.1),
    "lead_lag": lead_lag_market,
    "random_walk": random_walk_market,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--costs", type=float, nargs="+", default=[2.0, 20.0])
    parser.add_argument("--market", choices=list(MARKETS), default="slow_signal")
    parser.add_argument("--days", type=int, default=150)
    args = parser.parse_args()

    scanning = [0.0]
    scan = tuning.rule_sharpes

    def timed_scan(*a, **k):
        started = time.perf_counter()
        try:
            return scan(*a, **k)
        finally:
            scanning[0] += time.perf_counter() - started

    tuning.rule_sharpes = timed_scan
    oos_days = 30
    print(f"market {args.market}, {args.days} days ({oos_days} held out), XGBoost, 6 trials x 4 folds, 25 rules")
    print(
        "cost_bp seed | chosen rule        | fixed: net  gross  turnover | chosen: net  gross  turnover |  DSR  | gates"
    )
    for cost in args.costs:
        for seed in args.seeds:
            prices, features = MARKETS[args.market](START, args.days * 24, seed)
            windows = training_windows(
                START + timedelta(hours=args.days * 24 - 1), args.days - oos_days - 2, oos_days, 24, 1
            )
            config = tuning.TuningConfig(
                families=("xgboost",), n_trials=6, n_folds=4, window="expanding", horizon_hours=1,
                embargo_hours=24, rules=tuning.rule_grid(), cost_bps=cost, trainer=Trainer(seed=seed),
            )  # fmt: skip
            evaluation = EvaluationConfig(cost, placebo_runs=3, placebo_block_hours=24, thresholds=GateThresholds())
            scanning[0] = 0.0
            result = train_and_evaluate(
                features, prices, [LEADER, FOLLOWER], list(FEATURE_NAMES), windows, config, evaluation
            )
            tuned = sum(result.tuning.seconds_by_family.values())
            held_out, report = result.evaluation.scored, result.evaluation
            fixed, fixed_gross = backtest(held_out, FIXED_RULE, cost), backtest(held_out, FIXED_RULE, 0.0)
            chosen_gross = backtest(held_out, result.tuning.rule, 0.0)
            rule = result.tuning.rule
            print(
                f"{cost:7g} {seed:4d} | band {rule.band:<4g} {rule.smoothing_hours:2d} h     | "
                f"{fixed.sharpe:10.2f} {fixed_gross.sharpe:6.2f} {fixed.turnover:9.3f} | "
                f"{report.backtest.sharpe:11.2f} {chosen_gross.sharpe:6.2f} {report.backtest.turnover:9.3f} | "
                f"{report.sharpe['dsr']:.3f} | {'passed' if report.gates_passed else 'refused'} "
                f"(rule scan {scanning[0] / tuned:.1%} of tuning)"
            )


if __name__ == "__main__":
    main()
