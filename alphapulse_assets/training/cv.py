"""Purged walk-forward cross-validation with an embargo (López de Prado, Advances in Financial ML, ch. 7). Pure.

Rows are observations at integer hours `t`; the label of row t spans the hours (t, t + horizon]. The hour span is
cut into `n_folds + 1` contiguous blocks; fold k tests block k and trains on rows before it (all of them for an
expanding window, the last `train_hours` for a sliding one). Then, for each fold:

- purging drops every training row whose label window reaches the test block (t + horizon >= test start): its
  label was not yet known when the first test decision was made, and it overlaps the test rows' information;
- the embargo drops `embargo` more hours of training rows on each side of the test block. After the block, as
  López de Prado places it, it removes rows whose serially correlated features echo the test rows; a walk-forward
  never trains on rows after its test block, so there it is the `embargo` hours before the purged rows that count:
  rows whose long look-back features are nearly those of the first test rows.

Several symbols share an hour, so blocks are cut on hours, never on row counts: no hour is split across folds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WINDOWS = ("expanding", "sliding")


@dataclass(frozen=True)
class Fold:
    number: int
    train: np.ndarray  # row indices, ascending
    test: np.ndarray
    test_start: int  # first test hour
    test_end: int  # one past the last test hour
    purged: int  # training rows dropped because their label window reaches the test block
    embargoed: int  # training rows dropped by the embargo

    def as_dict(self) -> dict[str, int]:
        return {
            "fold": self.number,
            "test_start": self.test_start,
            "test_end": self.test_end,
            "n_train": len(self.train),
            "n_test": len(self.test),
            "purged": self.purged,
            "embargoed": self.embargoed,
        }


def block_edges(first_hour: int, last_hour: int, n_blocks: int) -> np.ndarray:
    """n_blocks + 1 hour boundaries cutting [first_hour, last_hour] into contiguous blocks of near-equal length."""
    span = last_hour - first_hour + 1
    if span < n_blocks:
        raise ValueError(f"{span} hours cannot be cut into {n_blocks} blocks")
    return first_hour + np.floor(np.arange(n_blocks + 1) * span / n_blocks).astype(np.int64)


def purged_walk_forward(
    hours: np.ndarray,
    horizon: int,
    n_folds: int,
    embargo: int,
    window: str = "expanding",
    train_hours: int | None = None,
) -> list[Fold]:
    """Folds over rows observed at `hours` (integers, any order, repeated across symbols).

    `train_hours` is the sliding window's length; by default the first block's, so every fold trains on as many
    hours as the first. A fold left with no training row is an error: the data or the fold count is wrong.
    """
    if n_folds < 1:
        raise ValueError(f"n_folds={n_folds}: at least one fold is required")
    if horizon < 1 or embargo < 0:
        raise ValueError(f"horizon={horizon}, embargo={embargo}: the horizon must be >= 1 and the embargo >= 0")
    if window not in WINDOWS:
        raise ValueError(f"window={window!r}: expected one of {', '.join(WINDOWS)}")
    hours = np.asarray(hours, dtype=np.int64)
    if hours.size == 0:
        raise ValueError("no rows to split")
    edges = block_edges(int(hours.min()), int(hours.max()), n_folds + 1)
    window_hours = int(edges[1] - edges[0]) if train_hours is None else int(train_hours)
    folds = []
    for k in range(1, n_folds + 1):
        test_start, test_end = int(edges[k]), int(edges[k + 1])
        test_mask = (hours >= test_start) & (hours < test_end)
        candidates = hours < test_start
        if window == "sliding":
            candidates &= hours >= test_start - window_hours
        purged = candidates & (hours + horizon >= test_start)
        kept = candidates & ~purged
        # Before the test block: the `embargo` hours that precede the purged rows; after it: the `embargo` hours
        # that follow it (never candidates in a walk-forward, so never counted here).
        embargoed = kept & (hours + horizon + embargo >= test_start)
        train_mask = kept & ~embargoed
        train = np.flatnonzero(train_mask)
        if train.size == 0:
            raise ValueError(
                f"fold {k} has no training rows left (test hours {test_start}..{test_end - 1}, horizon {horizon}, "
                f"embargo {embargo}): use fewer folds, a shorter embargo or a longer window"
            )
        folds.append(
            Fold(
                number=k,
                train=train,
                test=np.flatnonzero(test_mask),
                test_start=test_start,
                test_end=test_end,
                purged=int(purged.sum()),
                embargoed=int(embargoed.sum()),
            )
        )
    return folds
