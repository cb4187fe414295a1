"""The placebo twin: the chosen configuration retrained and scored exactly as the real model, on labels permuted
in blocks. Pure.

Permuting blocks (not single rows) keeps the labels' own serial structure and class balance, so the placebo has
everything the real labels have except their link to the features. Whatever the placebo scores is what this
pipeline finds in noise; the real model must beat it by more than the spread of several placebos.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

TARGET_COLUMNS = ("label_up", "next_return", "forward_return")


def block_permutation(n: int, block: int, rng: np.random.Generator) -> np.ndarray:
    """Indices 0..n-1 cut into consecutive blocks of `block` (the last may be shorter), blocks in random order."""
    if block < 1:
        raise ValueError(f"block={block}: must be >= 1")
    starts = np.arange(0, n, block)
    order = rng.permutation(len(starts))
    return np.concatenate([np.arange(s, min(s + block, n)) for s in starts[order]]) if n else np.arange(0)


def permute_targets(frame: pl.DataFrame, block_hours: int, rng: np.random.Generator) -> pl.DataFrame:
    """Each symbol's targets (label, returns) moved in blocks of `block_hours` rows; features stay in place."""
    parts = []
    for symbol in sorted(frame["symbol"].unique().to_list()):
        rows = frame.filter(pl.col("symbol") == symbol).sort("ts")
        order = block_permutation(rows.height, block_hours, rng)
        permuted = rows.select(TARGET_COLUMNS)[order]
        parts.append(rows.drop(TARGET_COLUMNS).hstack(permuted))
    return pl.concat(parts).select(frame.columns).sort("ts", "symbol")


@dataclass(frozen=True)
class PlaceboResult:
    accuracies: list[float]
    log_losses: list[float]
    sharpes: list[float]  # annualised

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def accuracy_band(self) -> float:
        """Two standard deviations of the placebos' accuracy: the noise band the real model must clear."""
        return 2.0 * float(np.std(self.accuracies, ddof=1)) if len(self.accuracies) > 1 else float("nan")


def run_placebo(
    train: pl.DataFrame,
    holdout: pl.DataFrame,
    feature_names: list[str],
    family_name: str,
    params: dict,
    trainer,
    runs: int,
    block_hours: int,
    rule,
    cost_bps: float,
) -> PlaceboResult:
    """`runs` placebo twins: targets permuted in blocks within the training and the out-of-sample segments (each
    keeps its own class balance), the chosen configuration refitted, and scored like the real model (with its
    trading `rule`)."""
    from alphapulse_assets.training.metrics import evaluate_predictions
    from alphapulse_assets.training.tuning import TrainingSet, fit_final

    accuracies, log_losses, sharpes = [], [], []
    for run in range(runs):
        rng = np.random.default_rng([trainer.seed, run, 0x9E3779B9])
        placebo_train = TrainingSet.from_frame(permute_targets(train, block_hours, rng), feature_names)
        model = fit_final(placebo_train, family_name, params, trainer)
        placebo_holdout = permute_targets(holdout, block_hours, rng)
        matrix = placebo_holdout.select(feature_names).to_numpy().astype(np.float64)
        scored = placebo_holdout.with_columns(pl.Series("probability", model.predict_proba(matrix)))
        metrics, _ = evaluate_predictions(scored, rule, cost_bps)
        accuracies.append(metrics["accuracy"])
        log_losses.append(metrics["log_loss"])
        sharpes.append(metrics["sharpe"])
    return PlaceboResult(accuracies, log_losses, sharpes)
