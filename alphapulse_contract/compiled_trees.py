"""XGBoost tree ensembles as flat arrays, walked level by level with numpy: one row in tens of microseconds.

`Booster.inplace_predict` costs ~190 µs for one row, almost all of it per-call overhead (DMatrix proxy, thread
pool, checks). The API scores one row per request, so the trees are laid out once as complete binary trees of the
ensemble's depth (a leaf above the bottom is copied into every leaf below it) and every tree advances one level per
numpy operation.

Exactness: XGBoost compares float32 feature values with float32 thresholds (`x < threshold` goes left, a missing
value follows the node's default direction) and accumulates leaf values in float32, tree by tree, from the base
margin. This does the same, so the margins agree with XGBoost's to float32 rounding of the final sigmoid. Every row
is computed independently of the others in its batch (a sequential cumulative sum, elementwise functions), so one
row scored alone and the same row scored in a backfill of thousands are bitwise equal: that is what lets the API
answer exactly what the `predictions` asset recorded.
"""

from __future__ import annotations

import json
import math

import numpy as np

# 2**12 leaves per tree: past this the complete layout costs more memory than the walk saves.
MAX_COMPILED_DEPTH = 12
# Rows per block in a batch: bounds the (rows x trees) index arrays to a few MB.
BLOCK_ROWS = 2048


class NotCompilable(ValueError):
    """The model uses something the compiled walk does not implement; score it with XGBoost itself."""


def _base_margin(learner: dict) -> np.float32:
    raw = learner["learner_model_param"]["base_score"]
    values = [float(v) for v in raw.strip("[]").split(",") if v.strip()]
    if len(values) != 1:
        raise NotCompilable(f"base_score {raw!r}: only single-target models are compiled")
    p = values[0]
    if not 0.0 < p < 1.0:
        raise NotCompilable(f"base_score {p} is not a probability")
    # XGBoost's ProbToMargin as it computes it: -log(1/p - 1), the arithmetic in float32 and a correctly rounded
    # log (numpy's float32 log can be one ulp off, which shows in the margin).
    odds_against = np.float32(1.0) / np.float32(p) - np.float32(1.0)
    return np.float32(-math.log(float(odds_against)))


def _depth(tree: dict, node: int = 0) -> int:
    left = tree["left_children"][node]
    if left == -1:
        return 0
    return 1 + max(_depth(tree, left), _depth(tree, tree["right_children"][node]))


class CompiledTrees:
    """A `binary:logistic` gbtree model, predicting P(up) for float64 rows (NaN = missing)."""

    def __init__(self, model_json: bytes | str):
        learner = json.loads(model_json)["learner"]
        if learner["objective"]["name"] != "binary:logistic":
            raise NotCompilable(f"objective {learner['objective']['name']}")
        booster = learner["gradient_booster"]
        if booster["name"] != "gbtree":
            raise NotCompilable(f"booster {booster['name']} (only gbtree is compiled)")
        trees = booster["model"]["trees"]
        if not trees:
            raise NotCompilable("the model has no trees")
        if any(any(t["split_type"]) or t["categories_nodes"] for t in trees):
            raise NotCompilable("categorical splits")
        self.n_features = int(learner["learner_model_param"]["num_feature"])
        self.base_margin = _base_margin(learner)
        self.depth = max(1, max(_depth(t) for t in trees))
        if self.depth > MAX_COMPILED_DEPTH:
            raise NotCompilable(f"depth {self.depth} > {MAX_COMPILED_DEPTH}")
        self.n_trees = len(trees)
        internal, leaves = 2**self.depth - 1, 2**self.depth
        self._internal, self._leaves = internal, leaves
        self.feature = np.zeros((self.n_trees, internal), dtype=np.intp)
        self.threshold = np.full((self.n_trees, internal), np.inf, dtype=np.float32)
        # What a missing value becomes at each node so that `value < threshold` sends it the default way.
        self.missing_as = np.full((self.n_trees, internal), -np.inf, dtype=np.float32)
        self.leaf = np.zeros((self.n_trees, leaves), dtype=np.float32)
        for t, tree in enumerate(trees):
            self._lay_out(t, tree, node=0, position=0, level=0)
        self.feature, self.threshold = self.feature.ravel(), self.threshold.ravel()
        self.missing_as, self.leaf = self.missing_as.ravel(), self.leaf.ravel()
        self._tree_internal_base = np.arange(self.n_trees, dtype=np.intp) * internal
        self._tree_leaf_base = np.arange(self.n_trees, dtype=np.intp) * leaves - internal

    def _lay_out(self, t: int, tree: dict, node: int, position: int, level: int) -> None:
        left = tree["left_children"][node]
        if left == -1:
            # A leaf at `level` covers 2**(depth - level) bottom slots; the pass-through nodes above them keep
            # their defaults (threshold +inf), and whichever way they go they reach this value.
            first = position
            for _ in range(self.depth - level):
                first = 2 * first + 1
            span = 2 ** (self.depth - level)
            start = first - self._internal
            self.leaf[t, start : start + span] = np.float32(tree["split_conditions"][node])
            return
        self.feature[t, position] = tree["split_indices"][node]
        self.threshold[t, position] = np.float32(tree["split_conditions"][node])
        self.missing_as[t, position] = -np.inf if tree["default_left"][node] else np.inf
        self._lay_out(t, tree, left, 2 * position + 1, level + 1)
        self._lay_out(t, tree, tree["right_children"][node], 2 * position + 2, level + 1)

    def margin(self, matrix: np.ndarray) -> np.ndarray:
        """Raw scores (log-odds), float32, one per row."""
        rows = np.asarray(matrix, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.n_features:
            raise ValueError(f"expected rows of {self.n_features} features, got shape {rows.shape}")
        out = np.empty(rows.shape[0], dtype=np.float32)
        for start in range(0, rows.shape[0], BLOCK_ROWS):
            out[start : start + BLOCK_ROWS] = self._margin_block(rows[start : start + BLOCK_ROWS])
        return out

    def _margin_block(self, rows: np.ndarray) -> np.ndarray:
        n = rows.shape[0]
        position = np.zeros((n, self.n_trees), dtype=np.intp)
        row_offset = (np.arange(n, dtype=np.intp) * self.n_features)[:, None]
        flat_rows = rows.ravel()
        has_missing = bool(np.isnan(flat_rows).any())  # skipping the substitution for complete rows saves a third
        for _ in range(self.depth):
            node = self._tree_internal_base + position
            value = flat_rows[row_offset + self.feature[node]]
            if has_missing:
                value = np.where(np.isnan(value), self.missing_as[node], value)
            position = 2 * position + 1 + (value >= self.threshold[node])
        leaf_values = self.leaf[self._tree_leaf_base + position]
        # XGBoost adds tree by tree in float32 from the base margin; a cumulative sum is sequential per row.
        summed = np.cumsum(np.concatenate([np.full((n, 1), self.base_margin), leaf_values], axis=1), axis=1)
        return summed[:, -1]

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        margin = self.margin(matrix).astype(np.float64)
        return 1.0 / (1.0 + np.exp(-margin))
