"""A full retrain on 2 years of hourly bars for two symbols: 30 Optuna trials x 5 purged walk-forward folds for
each of XGBoost, CatBoost and logistic regression, the refit, and the evaluation with five placebo twins.

    uv run python bench/training.py [--years 2] [--trials 30] [--folds 5] [--market lead_lag|random_walk]

The market is `alphapulse_assets.training.synthetic` (a planted lead-lag by default, so the gates have something
to pass), the features are the full catalog, and the steps are those of the `trained_model` and `model_evaluation`
assets (`alphapulse_assets.training.pipeline`). Prints where the time goes: per family the trials, pruned trials,
fold fits and seconds per fit, then the refit and the evaluation. One process, the machine's two cores, the default
two training threads.
"""

import argparse
import os
import time
from datetime import UTC, datetime, timedelta

from alphapulse_assets.features.catalog import FEATURE_NAMES
from alphapulse_assets.thresholds import GateThresholds
from alphapulse_assets.training.dataset import training_windows
from alphapulse_assets.training.evaluation import EvaluationConfig
from alphapulse_assets.training.families import Trainer, resolve_device
from alphapulse_assets.training.pipeline import train_and_evaluate
from alphapulse_assets.training.synthetic import FOLLOWER, LEADER, lead_lag_market, random_walk_market
from alphapulse_assets.training.tuning import TuningConfig, rule_grid

START = datetime(2023, 1, 1, tzinfo=UTC)
MARKETS = {"lead_lag": lead_lag_market, "random_walk": random_walk_market}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--years", type=float, default=2.0)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--oos-days", type=int, default=30)
    parser.add_argument("--market", choices=list(MARKETS), default="lead_lag")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    hours = int(args.years * 365 * 24)
    started = time.perf_counter()
    prices, features = MARKETS[args.market](START, hours, args.seed)
    feature_seconds = time.perf_counter() - started
    decision = START + timedelta(hours=hours - 1)
    windows = training_windows(decision, hours // 24 - args.oos_days - 2, args.oos_days, 24, 1)
    device = resolve_device("auto")
    tuning = TuningConfig(
        families=("xgboost", "catboost", "logistic"),
        n_trials=args.trials,
        n_folds=args.folds,
        window="expanding",
        horizon_hours=1,
        embargo_hours=24,
        rules=rule_grid(),
        cost_bps=2.0,
        trainer=Trainer(seed=args.seed, threads=2, device=device),
    )
    evaluation = EvaluationConfig(2.0, 5, 24, GateThresholds())
    print(
        f"{args.years:g} years x 2 symbols ({features.height:,} feature rows, {len(FEATURE_NAMES)} features), "
        f"{args.trials} trials x {args.folds} folds per family, device {device}, {os.cpu_count()} CPUs"
    )
    started = time.perf_counter()
    result = train_and_evaluate(features, prices, [LEADER, FOLLOWER], list(FEATURE_NAMES), windows, tuning, evaluation)
    total = time.perf_counter() - started

    print(f"\nfeatures for the market: {feature_seconds:.1f} s (not part of a retrain: the features asset's job)")
    print(f"{'step':<22}{'seconds':>9}{'trials':>8}{'pruned':>8}{'fits':>6}{'s/fit':>8}")
    for name in tuning.families:
        trials = [t for t in result.tuning.trials if t.family == name]
        fits = sum(len(t.folds) for t in trials)
        seconds = result.tuning.seconds_by_family[name]
        pruned = sum(t.state == "pruned" for t in trials)
        print(f"{'tune ' + name:<22}{seconds:>9.1f}{len(trials):>8}{pruned:>8}{fits:>6}{seconds / fits:>8.3f}")
    print(
        f"{'  of which prepare':<22}{result.tuning.prepare_seconds:>9.1f}  (fold matrices, quantised once per family)"
    )
    for step in ("load", "refit", "evaluate"):
        print(f"{step:<22}{result.seconds[step]:>9.1f}")
    print(f"{'retrain, total':<22}{total:>9.1f}  ({total / 60:.2f} min)")

    report = result.evaluation
    best = result.tuning.best
    print(f"\nchosen: {best.family} trial {best.number}, fold log loss {best.cv_log_loss:.4f}")
    print(
        f"out of sample: accuracy {report.metrics['accuracy']:.4f}, AUC {report.metrics['auc']:.4f}, "
        f"Sharpe {report.metrics['sharpe']:.2f}, DSR {report.sharpe['dsr']:.4f} over {result.tuning.n_trials} trials, "
        f"placebo accuracy {report.placebo.accuracy:.4f} +- {report.placebo.accuracy_band:.4f}"
    )
    print(f"gates: {report.summary}")


if __name__ == "__main__":
    main()
