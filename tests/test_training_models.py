"""The model families behind one interface, tuning, and reproducibility: same inputs + same seed -> same sha256."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from alphapulse_assets.features.catalog import FEATURE_NAMES
from alphapulse_assets.training.dataset import labelled_rows
from alphapulse_assets.training.families import FAMILIES, Trainer, family, resolve_device
from alphapulse_assets.training.synthetic import lead_lag_market
from alphapulse_assets.training.tuning import TrainingSet, TuningConfig, fit_final, rule_grid, score_configuration, tune
from alphapulse_contract.predictors import ArtifactError, load_predictor
from alphapulse_contract.scoring import sha256_hex

NAMES = ["a", "b", "c", "d"]


def toy(seed: int = 0, n: int = 1500):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, len(NAMES)))
    x[rng.random(x.shape) < 0.05] = np.nan  # missing values: every family must handle them
    y = (np.nan_to_num(x[:, 0]) + 0.5 * rng.standard_normal(n) > 0).astype(np.int64)
    return x, y


def params(name: str) -> dict:
    import optuna

    return FAMILIES[name].search_space(optuna.trial.FixedTrial(_FIXED[name]))


_FIXED = {
    "xgboost": {
        "max_depth": 3,
        "eta": 0.1,
        "num_boost_round": 50,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "lambda": 1.0,
        "min_leaf_share": 0.01,
    },
    "catboost": {"depth": 3, "learning_rate": 0.1, "iterations": 50, "l2_leaf_reg": 3.0, "subsample": 0.8},
    "logistic": {"C": 0.5},
}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_each_family_fits_deterministically_and_its_artifact_predicts_what_it_did(name):
    x, y = toy()
    model_family = family(name)
    first = model_family.fit(model_family.prepare(x, y), params(name), Trainer(seed=3))
    again = model_family.fit(model_family.prepare(x, y), params(name), Trainer(seed=3))
    assert sha256_hex(first.artifact()) == sha256_hex(again.artifact())
    loaded = load_predictor(model_family.model_format, first.artifact())
    assert loaded.n_features == len(NAMES)
    np.testing.assert_allclose(loaded.predict_proba(x), first.predict_proba(x), rtol=0, atol=1e-6)
    p = first.predict_proba(x)
    assert np.all((p > 0) & (p < 1)) and np.mean((p > 0.5) == y) > 0.7  # it learnt the planted column
    importance = first.importance(NAMES)
    assert sum(importance.values()) == pytest.approx(1.0) and max(importance, key=importance.get) == "a"


@pytest.mark.parametrize("name", ["xgboost", "catboost"])
def test_a_different_seed_gives_a_different_model(name):
    x, y = toy()
    model_family = family(name)
    digests = {
        sha256_hex(model_family.fit(model_family.prepare(x, y), params(name), Trainer(seed=s)).artifact())
        for s in (1, 2)
    }
    assert len(digests) == 2


def test_corrupt_artifacts_are_refused_clearly():
    with pytest.raises(ArtifactError, match="unsupported model format"):
        load_predictor("onnx", b"")
    with pytest.raises(ArtifactError, match="logistic-json"):
        load_predictor("logistic-json", b'{"coef": [1.0], "mean": [0.0]}')
    with pytest.raises(ArtifactError, match="catboost cannot load"):
        load_predictor("catboost-cbm", b"not a model")
    with pytest.raises(ArtifactError, match="xgboost cannot load"):
        load_predictor("xgboost-ubj", b"not a model")


def test_the_device_is_the_cpu_without_a_gpu():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda")
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")


@pytest.fixture(scope="module")
def training_set():
    start = datetime(2024, 1, 1, tzinfo=UTC)
    prices, features = lead_lag_market(start, 40 * 24, seed=11)
    frame = labelled_rows(features, prices, ["BTCUSDT", "ETHUSDT"], start, start + timedelta(days=40), 1, 0.0)
    return TrainingSet.from_frame(frame, list(FEATURE_NAMES))


def config(seed: int, trials: int = 6) -> TuningConfig:
    return TuningConfig(
        families=("xgboost", "catboost", "logistic"),
        n_trials=trials,
        n_folds=3,
        window="expanding",
        horizon_hours=1,
        embargo_hours=12,
        rules=rule_grid(),
        cost_bps=2.0,
        trainer=Trainer(seed=seed),
    )


def test_tuning_is_reproducible_to_the_model_sha256(training_set):
    runs = [tune(training_set, config(seed=5)) for _ in range(2)]
    assert [(t.family, t.number, t.state, t.params) for t in runs[0].trials] == [
        (t.family, t.number, t.state, t.params) for t in runs[1].trials
    ]
    models = [fit_final(training_set, r.best.family, r.best.params, Trainer(seed=5)) for r in runs]
    assert sha256_hex(models[0].artifact()) == sha256_hex(models[1].artifact())
    other = tune(training_set, config(seed=6))
    assert [t.params for t in other.trials] != [t.params for t in runs[0].trials]


def test_tuning_records_every_trial_and_chooses_on_folds_alone(training_set):
    result = tune(training_set, config(seed=5))
    assert result.n_trials == 18 and {t.family for t in result.trials} == {"xgboost", "catboost", "logistic"}
    completed = [t for t in result.trials if t.state == "complete"]
    assert result.best in completed
    assert result.best.cv_log_loss == min(t.cv_log_loss for t in completed)
    assert all(len(t.folds) == 3 for t in completed) and all(
        len(t.folds) < 3 for t in result.trials if t.state == "pruned"
    )
    assert result.trial_sharpe_variance > 0
    for fold in result.best.folds:  # every fold scored with train and test numbers the gates read
        assert 0 < fold.val_log_loss < 1 and fold.train_auc >= 0.5 and fold.n_test > 0


def test_a_fold_without_both_directions_fails_clearly(training_set):
    flat = TrainingSet(training_set.x, np.ones_like(training_set.label), training_set.hours, training_set.frame)
    with pytest.raises(ValueError, match="both directions are needed"):
        tune(flat, config(seed=1, trials=1))


def test_a_refit_scores_the_chosen_configuration_exactly_as_its_search_did(training_set):
    """Between two searches (ALPHAPULSE_RETUNE_EVERY_HOURS) the chosen configuration is refitted and scored on the
    new window's folds; on the same window it reproduces the search's own record of that configuration."""
    search = tune(training_set, config(seed=5))
    refit = score_configuration(training_set, config(seed=5), search.best.family, search.best.params)
    assert refit.n_trials == 1 and refit.best.state == "refit" and refit.best.family == search.best.family
    assert [f.as_dict() for f in refit.best.folds] == [f.as_dict() for f in search.best.folds]
    np.testing.assert_array_equal(refit.best.rule_sharpes, search.best.rule_sharpes)
    assert refit.rule == search.rule
