"""Purged walk-forward cross-validation: fold boundaries, purging and the embargo, on hours repeated across
symbols."""

import numpy as np
import pytest

from alphapulse_assets.training.cv import block_edges, purged_walk_forward

SYMBOLS = 3
HOURS = np.repeat(np.arange(1000, 1600), SYMBOLS)  # 600 hours, three rows per hour


def test_blocks_cover_every_hour_once_and_never_split_an_hour():
    edges = block_edges(1000, 1599, 6)
    assert edges[0] == 1000 and edges[-1] == 1600 and np.all(np.diff(edges) == 100)
    folds = purged_walk_forward(HOURS, horizon=1, n_folds=5, embargo=0)
    tested = np.concatenate([f.test for f in folds])
    assert len(np.unique(tested)) == len(tested)
    assert set(HOURS[tested]) == set(range(1100, 1600))  # every hour after the first block is tested once
    for fold in folds:
        assert set(HOURS[fold.test]) == set(range(fold.test_start, fold.test_end))
        assert len(fold.test) == (fold.test_end - fold.test_start) * SYMBOLS  # all symbols of an hour together


@pytest.mark.parametrize("horizon", [1, 4, 24])
@pytest.mark.parametrize("embargo", [0, 12])
def test_no_training_label_reaches_its_test_fold_and_the_embargo_holds(horizon, embargo):
    for fold in purged_walk_forward(HOURS, horizon=horizon, n_folds=5, embargo=embargo):
        train_hours = HOURS[fold.train]
        # Purged: a training row's label spans (t, t + horizon]; it must end before the first test decision.
        assert np.all(train_hours + horizon < fold.test_start)
        # Embargo before the test block: `embargo` more hours left out after the purged ones...
        assert np.all(train_hours + horizon + embargo < fold.test_start)
        # ...and nothing of, or within `embargo` hours after, the test block is trained on (walk-forward).
        assert not np.any((train_hours >= fold.test_start) & (train_hours < fold.test_end + embargo))
        # Exactly those rows were dropped: the newest kept hour is the last one the rules allow.
        assert train_hours.max() == fold.test_start - horizon - embargo - 1
        assert fold.purged == horizon * SYMBOLS and fold.embargoed == embargo * SYMBOLS


def test_expanding_windows_keep_all_history_and_sliding_windows_a_fixed_length():
    expanding = purged_walk_forward(HOURS, horizon=1, n_folds=5, embargo=6, window="expanding")
    assert all(HOURS[f.train].min() == 1000 for f in expanding)
    assert [len(f.train) for f in expanding] == sorted(len(f.train) for f in expanding)
    sliding = purged_walk_forward(HOURS, horizon=1, n_folds=5, embargo=6, window="sliding", train_hours=150)
    for fold in sliding:
        assert HOURS[fold.train].min() >= fold.test_start - 150
    assert len({len(f.train) for f in sliding[1:]}) == 1  # once the history is long enough, always the same length


def test_rows_in_any_order_give_the_same_folds():
    rng = np.random.default_rng(0)
    order = rng.permutation(len(HOURS))
    shuffled = purged_walk_forward(HOURS[order], horizon=2, n_folds=4, embargo=5)
    for fold, ordered in zip(shuffled, purged_walk_forward(HOURS, horizon=2, n_folds=4, embargo=5), strict=True):
        assert sorted(HOURS[order][fold.train]) == sorted(HOURS[ordered.train])
        assert sorted(HOURS[order][fold.test]) == sorted(HOURS[ordered.test])


def test_missing_hours_are_simply_absent():
    holed = HOURS[(HOURS < 1200) | (HOURS >= 1250)]
    folds = purged_walk_forward(holed, horizon=1, n_folds=5, embargo=0)
    assert [f.test_start for f in folds] == [1100, 1200, 1300, 1400, 1500]  # blocks are cut on the hour span
    assert len(folds[1].test) == 50 * SYMBOLS


def test_impossible_layouts_fail_clearly():
    with pytest.raises(ValueError, match="no training rows left"):
        purged_walk_forward(HOURS, horizon=1, n_folds=5, embargo=100)
    with pytest.raises(ValueError, match="window"):
        purged_walk_forward(HOURS, horizon=1, n_folds=5, embargo=0, window="rolling")
    with pytest.raises(ValueError, match="cannot be cut"):
        purged_walk_forward(np.arange(3), horizon=1, n_folds=5, embargo=0)
    with pytest.raises(ValueError, match="at least one fold"):
        purged_walk_forward(HOURS, horizon=1, n_folds=0, embargo=0)
