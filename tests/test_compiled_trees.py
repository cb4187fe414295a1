import numpy as np
import pytest
import xgboost as xgb

from alphapulse_contract.compiled_trees import CompiledTrees, NotCompilable
from alphapulse_contract.predictors import XGBOOST_UBJ, load_predictor


def trained(params: dict, rounds: int = 60, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3000, 12))
    y = (x[:, 0] - 0.5 * x[:, 3] + rng.standard_normal(3000) > 0).astype(int)
    x[rng.random(x.shape) < 0.1] = np.nan  # missing values take each node's default direction
    base = {"objective": "binary:logistic", "eta": 0.2, "nthread": 1, "seed": seed}
    trained_booster = xgb.train(base | params, xgb.DMatrix(x, y), rounds)
    # The artifact, not the in-memory booster: saving rounds base_score to 7 digits, and the artifact is what the
    # graph and the API load.
    booster = xgb.Booster()
    booster.load_model(bytearray(trained_booster.save_raw(raw_format="ubj")))
    return booster, x


@pytest.mark.parametrize(
    "params",
    [
        {"max_depth": 6},
        # Lopsided trees: leaves at many depths are copied down to the bottom level.
        {"max_depth": 0, "max_leaves": 9, "grow_policy": "lossguide"},
        {"max_depth": 1},
        {"max_depth": 4, "base_score": 0.3, "subsample": 0.7, "colsample_bynode": 0.5},
    ],
)
def test_margins_are_bitwise_xgboosts_and_probabilities_agree(params):
    booster, x = trained(params)
    compiled = CompiledTrees(bytes(booster.save_raw(raw_format="json")))
    edges = np.vstack([x[:50], np.full((1, 12), np.nan), np.full((1, 12), np.inf), np.full((1, 12), -1e30)])
    rows = np.vstack([x, edges])
    assert np.array_equal(compiled.margin(rows), booster.inplace_predict(rows, predict_type="margin"))
    np.testing.assert_allclose(compiled.predict_proba(rows), booster.inplace_predict(rows), rtol=0, atol=2e-7)


def test_a_row_scores_the_same_alone_as_in_any_batch():
    booster, x = trained({"max_depth": 5})
    compiled = CompiledTrees(bytes(booster.save_raw(raw_format="json")))
    batch = compiled.predict_proba(x)
    alone = np.array([compiled.predict_proba(x[i : i + 1])[0] for i in range(0, 3000, 7)])
    assert np.array_equal(alone, batch[::7])


def test_what_is_not_compiled_is_scored_by_xgboost_itself():
    booster, x = trained({"booster": "dart", "max_depth": 3, "rate_drop": 0.1}, rounds=10)
    with pytest.raises(NotCompilable, match="dart"):
        CompiledTrees(bytes(booster.save_raw(raw_format="json")))
    predictor = load_predictor(XGBOOST_UBJ, bytes(booster.save_raw(raw_format="ubj")))
    assert predictor.compiled is None and "dart" in predictor.not_compiled_because
    np.testing.assert_array_equal(predictor.predict_proba(x[:20]), booster.inplace_predict(x[:20]).astype(np.float64))


def test_wrong_width_is_refused():
    booster, x = trained({"max_depth": 2}, rounds=5)
    compiled = CompiledTrees(bytes(booster.save_raw(raw_format="json")))
    with pytest.raises(ValueError, match="12 features"):
        compiled.margin(x[:, :5])
