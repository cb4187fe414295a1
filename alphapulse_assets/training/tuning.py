"""Hyperparameter search over every model family with Optuna, scored on purged walk-forward folds. Pure: arrays
in, a record of every trial and the chosen configuration out.

Each family gets its own study (TPE sampler, median pruner on the running mean of fold log losses), seeded from
the run's seed, so the same inputs and seed always walk the same trials. The configuration with the lowest mean
fold log loss across all families wins; the final out-of-sample segment is never seen here. The trading rule
(`TradingRule`: band and smoothing) is chosen here too, on the chosen configuration's walk-forward predictions, for
net Sharpe after costs. Every trial run, pruned ones included, counts towards the deflated Sharpe ratio's number of
trials once per rule tried: a configuration's best rule is a selection like any other.

With a shared Optuna storage (a database), several processes tune the same studies: each study is named by the
decision, the family and a fingerprint of the data and settings, so only workers scoring the same rows the same way
meet in it. `n_trials` is then the study's budget, not each worker's. A trial's fold scores and net returns live in
the study (user attributes), so whichever worker reads the result counts every worker's trials (`counted_trials`).
"""

from __future__ import annotations

import hashlib
import math
import time
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from alphapulse_assets.training.cv import Fold, purged_walk_forward
from alphapulse_assets.training.families import TrainedModel, Trainer, family
from alphapulse_assets.training.metrics import RuleBlock, best_rule, log_loss, roc_auc, rule_sharpes
from alphapulse_assets.training.sharpe import trial_sharpe_variance
from alphapulse_contract.scoring import MAX_SMOOTHING_HOURS, SIGNAL_BANDS, SMOOTHING_HOURS, TradingRule

# pg_advisory_lock key serialising Optuna's schema creation (any constant no other code on the database uses).
OPTUNA_SCHEMA_LOCK = zlib.crc32(b"alphapulse/optuna-schema")


def rule_grid(bands=SIGNAL_BANDS, smoothing_hours=SMOOTHING_HOURS) -> tuple[TradingRule, ...]:
    """Every (band, smoothing) pair, simplest first (shortest smoothing, then narrowest band), so ties in Sharpe go
    to the simpler rule. Smoothing reaches at most MAX_SMOOTHING_HOURS: what the online snapshot carries."""
    if not bands or not smoothing_hours or max(smoothing_hours) > MAX_SMOOTHING_HOURS:
        raise ValueError(
            f"signal_bands {list(bands)} / smoothing_hours {list(smoothing_hours)}: both need at least one value, "
            f"smoothing at most {MAX_SMOOTHING_HOURS} hours (what the online snapshot carries)"
        )
    return tuple(TradingRule(band, hours) for hours in sorted(set(smoothing_hours)) for band in sorted(set(bands)))


@dataclass(frozen=True)
class TuningConfig:
    families: tuple[str, ...]
    n_trials: int  # per family
    n_folds: int
    window: str
    horizon_hours: int
    embargo_hours: int
    # The trading rules tried on every complete trial's walk-forward predictions (ModelPolicy's grid).
    rules: tuple[TradingRule, ...]
    cost_bps: float
    trainer: Trainer
    # An Optuna storage URL (postgresql://...) shared by workers; None keeps the studies in this process.
    storage: str | None = None
    study_prefix: str = "alphapulse"
    # Who is tuning (a Dagster run id), recorded on each trial it runs.
    worker: str | None = None
    # Seeds this worker's samplers apart from the other workers'. None: the run's own stream, as when tuning alone
    # (trained_model keeps it, so its proposals are the ones a single process would make).
    sampler_stream: str | None = None
    # How long the reader waits for other workers' running trials before giving up (the step then retries).
    wait_for_running_seconds: float = 1800.0
    # A worker that stops heartbeating this long has its running trial marked failed (needs a shared storage).
    heartbeat_seconds: int = 30


@dataclass(frozen=True)
class TrainingSet:
    """The cross-validation region: features, direction labels (-1 inside the dead band) and what the backtest
    needs. Rows are ordered by hour, then symbol."""

    x: np.ndarray
    label: np.ndarray
    hours: np.ndarray  # integer hours since the epoch
    frame: pl.DataFrame  # ts, symbol, next_return: for the fold backtests

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, feature_names: list[str]) -> TrainingSet:
        ordered = frame.sort("ts", "symbol")
        hours = (ordered["ts"].dt.epoch("s") // 3600).to_numpy()
        return cls(
            x=ordered.select(feature_names).to_numpy().astype(np.float64),
            label=ordered["label_up"].fill_null(-1).to_numpy().astype(np.int64),
            hours=hours,
            frame=ordered.select("ts", "symbol", "next_return"),
        )

    @property
    def labelled(self) -> np.ndarray:
        """Rows with a direction (outside the dead band): the rows models are fitted on."""
        return self.label >= 0

    @property
    def base_rate(self) -> float:
        """Share of up labels among the labelled rows: what the no-skill baseline predicts."""
        return float(self.label[self.labelled].mean())


@dataclass(frozen=True)
class FoldScore:
    fold: int
    val_log_loss: float
    val_auc: float
    train_log_loss: float
    train_auc: float
    baseline_log_loss: float  # the fold's training base rate, predicted for every test row
    n_train: int
    n_test: int

    @property
    def gain(self) -> float:
        """Log-loss improvement over the no-skill baseline on this fold (positive: the model is better)."""
        return self.baseline_log_loss - self.val_log_loss

    def as_dict(self) -> dict[str, float]:
        """The fold's record, gain included: what the gates read back (`ChosenModel.fold_scores`)."""
        return {**self.__dict__, "gain": self.gain}


@dataclass
class TrialRecord:
    family: str
    number: int
    state: str  # complete | pruned
    params: dict[str, Any]
    folds: list[FoldScore] = field(default_factory=list)
    # Per-hour walk-forward net Sharpe of each trading rule (the config's `rules` order); complete trials only.
    rule_sharpes: np.ndarray | None = None
    seconds: float = 0.0
    worker: str | None = None  # who ran it, when workers share the study

    @property
    def cv_log_loss(self) -> float:
        return float(np.mean([f.val_log_loss for f in self.folds])) if self.folds else float("nan")

    @property
    def cv_auc(self) -> float:
        return float(np.mean([f.val_auc for f in self.folds])) if self.folds else float("nan")

    @property
    def train_auc(self) -> float:
        return float(np.mean([f.train_auc for f in self.folds])) if self.folds else float("nan")

    @property
    def rule_index(self) -> int | None:
        """Which rule trades this configuration's walk-forward predictions best after costs."""
        return best_rule(self.rule_sharpes) if self.rule_sharpes is not None else None

    @property
    def sharpe(self) -> float:
        """Per-hour Sharpe of the walk-forward signal after costs under its best rule (not annualised)."""
        return float(self.rule_sharpes[self.rule_index]) if self.rule_sharpes is not None else float("nan")

    @classmethod
    def from_trial(cls, family_name: str, trial) -> TrialRecord:
        """A finished Optuna trial as its record, from the attributes `_objective` stored on it."""
        attrs = trial.user_attrs
        sharpes = attrs.get("rule_sharpes")
        return cls(
            family=family_name,
            number=trial.number,
            state="complete" if trial.state.name == "COMPLETE" else "pruned",
            params=dict(attrs.get("params", trial.params)),
            folds=[FoldScore(**{k: v for k, v in f.items() if k != "gain"}) for f in attrs.get("folds", [])],
            rule_sharpes=np.asarray(sharpes, dtype=np.float64) if sharpes is not None else None,
            seconds=float(attrs.get("seconds", 0.0)),
            worker=attrs.get("worker"),
        )

    def as_row(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "trial": self.number,
            "state": self.state,
            "cv_log_loss": self.cv_log_loss,
            "cv_auc": self.cv_auc,
            "train_auc": self.train_auc,
            "cv_sharpe_hourly": self.sharpe,
            "cv_rule": self.rule_index,
            "rule_sharpes_hourly": None if self.rule_sharpes is None else self.rule_sharpes.tolist(),
            "folds_scored": len(self.folds),
            "seconds": self.seconds,
            "worker": self.worker,
        }


@dataclass(frozen=True)
class TuningResult:
    trials: list[TrialRecord]
    best: TrialRecord
    folds: list[Fold]
    seconds_by_family: dict[str, float]
    prepare_seconds: float
    rules: tuple[TradingRule, ...]

    @property
    def n_trials(self) -> int:
        return len(self.trials)

    @property
    def rule(self) -> TradingRule:
        """The trading rule chosen on the chosen configuration's walk-forward predictions."""
        return self.rules[self.best.rule_index]

    @property
    def n_strategies(self) -> int:
        """What the deflated Sharpe counts: every trial, once per rule it could have been traded with."""
        return self.n_trials * len(self.rules)

    @property
    def n_completed(self) -> int:
        return sum(t.state == "complete" for t in self.trials)

    @property
    def workers(self) -> list[str]:
        """The workers whose trials are in the result (empty when one process tuned alone)."""
        return sorted({t.worker for t in self.trials if t.worker is not None})

    @property
    def trial_sharpe_variance(self) -> float:
        """The spread luck alone gives the completed trials' per-hour walk-forward Sharpe ratios: across trials,
        within each trading rule, pooled over the rules (`sharpe.trial_sharpe_variance`)."""
        rows = [t.rule_sharpes for t in self.trials if t.rule_sharpes is not None]
        return trial_sharpe_variance(np.vstack(rows)) if rows else 0.0

    def best_by_family(self) -> dict[str, TrialRecord]:
        best: dict[str, TrialRecord] = {}
        for trial in self.trials:
            if trial.state == "complete" and (
                trial.family not in best or trial.cv_log_loss < best[trial.family].cv_log_loss
            ):
                best[trial.family] = trial
        return best


def family_seed(seed: int, family_name: str, stream: str | None = None) -> int:
    """Each family's sampler gets its own stream, fixed by the run's seed and the family's name, and, for extra
    workers on a shared study, by the worker's stream: two workers with one seed would propose the same first
    trials."""
    name = family_name if stream is None else f"{family_name}/{stream}"
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (2**31)


def study_fingerprint(data: TrainingSet, config: TuningConfig) -> str:
    """Identifies what a study's trials were scored on: the rows and every setting that changes a score. Workers
    share a study only when this agrees, and a re-run on corrected data starts a new one."""
    digest = hashlib.sha256()
    for array in (data.x, data.label, data.hours, data.frame["next_return"].to_numpy()):
        digest.update(np.ascontiguousarray(array).tobytes())
    settings = (
        config.n_folds,
        config.window,
        config.horizon_hours,
        config.embargo_hours,
        tuple(rule.as_dict().values() for rule in config.rules),
        config.cost_bps,
        config.trainer.seed,
        config.trainer.device,
    )
    digest.update(repr(settings).encode())
    return digest.hexdigest()[:16]


def make_folds(data: TrainingSet, config: TuningConfig) -> list[Fold]:
    folds = purged_walk_forward(data.hours, config.horizon_hours, config.n_folds, config.embargo_hours, config.window)
    for fold in folds:
        labels = data.label[fold.train]
        classes = set(np.unique(labels[labels >= 0]).tolist())
        if classes != {0, 1}:
            raise ValueError(
                f"fold {fold.number}: its training rows hold labels {sorted(classes)}, both directions are needed "
                "(widen the training window or narrow the dead band)"
            )
    return folds


def _fold_arrays(data: TrainingSet, fold: Fold) -> tuple[np.ndarray, np.ndarray]:
    return fold.train[data.labelled[fold.train]], fold.test


def tune(data: TrainingSet, config: TuningConfig) -> TuningResult:
    """Run every family's study on the same folds and return every trial (every worker's, with a shared storage)
    with the winner."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folds = make_folds(data, config)
    storage = _storage(config)
    fingerprint = study_fingerprint(data, config)
    trials: list[TrialRecord] = []
    seconds_by_family: dict[str, float] = {}
    prepare_seconds = 0.0
    finished = _finished_states()
    for name in config.families:
        model_family = family(name)
        started = time.perf_counter()
        prepared = _prepared_folds(model_family, data, folds)
        prepare_seconds += time.perf_counter() - started

        def objective(trial, model_family=model_family, prepared=prepared):
            return _objective(trial, model_family, prepared, folds, data, config)

        study = optuna.create_study(
            storage=storage,
            study_name=f"{config.study_prefix}/{name}/{fingerprint}",
            load_if_exists=True,
            direction="minimize",
            sampler=optuna.samplers.TPESampler(seed=family_seed(config.trainer.seed, name, config.sampler_stream)),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),
        )
        budget = config.n_trials - len(study.get_trials(deepcopy=False, states=finished))
        if budget > 0:
            study.optimize(
                objective,
                n_trials=budget,
                # Stops this worker once the study as a whole has its trials, whoever ran them.
                callbacks=[optuna.study.MaxTrialsCallback(config.n_trials, states=finished)],
            )
        counted = counted_trials(study, config.n_trials, storage is not None, config.wait_for_running_seconds)
        trials += [TrialRecord.from_trial(name, t) for t in counted]
        seconds_by_family[name] = time.perf_counter() - started
    completed = [t for t in trials if t.state == "complete"]
    best = min(completed, key=lambda t: (t.cv_log_loss, t.family, t.number))
    return TuningResult(trials, best, folds, seconds_by_family, prepare_seconds, config.rules)


def _finished_states() -> tuple:
    """The trials that count: complete and pruned (a failed trial scored nothing)."""
    from optuna.trial import TrialState

    return (TrialState.COMPLETE, TrialState.PRUNED)


def _objective(trial, model_family, prepared, folds: list[Fold], data: TrainingSet, config: TuningConfig) -> float:
    """One configuration scored fold by fold; what the evaluation needs is kept on the trial itself, so a shared
    study holds every worker's record."""
    import optuna

    trial_started = time.perf_counter()
    params = model_family.search_space(trial)
    trial.set_user_attr("params", params)
    if config.worker is not None:
        trial.set_user_attr("worker", config.worker)

    def report(step: int, scores: list[FoldScore]) -> bool:
        trial.report(float(np.mean([s.val_log_loss for s in scores])), step)
        return trial.should_prune()

    scores, sharpes = _score_folds(model_family, prepared, params, folds, data, config, report)
    _keep(trial, scores, sharpes, trial_started)
    if sharpes is None:
        raise optuna.TrialPruned()
    return float(np.mean([s.val_log_loss for s in scores]))


def _score_folds(model_family, prepared, params, folds, data, config, stop_after=None):
    """One configuration fitted and scored fold by fold: (fold scores, each rule's walk-forward net Sharpe), the
    Sharpes None when `stop_after(step, scores)` stopped it early (a pruned trial)."""
    scores: list[FoldScore] = []
    blocks = []
    for step, (fold, fold_data) in enumerate(zip(folds, prepared, strict=True)):
        model = model_family.fit(fold_data, params, config.trainer)
        score, block = score_fold(data, fold, model)
        scores.append(score)
        blocks.append(block)
        if stop_after is not None and stop_after(step, scores):
            return scores, None
    return scores, rule_sharpes(blocks, config.rules, config.cost_bps)


def _prepared_folds(model_family, data: TrainingSet, folds: list[Fold]) -> list:
    return [
        model_family.prepare(data.x[train], data.label[train]) for train, _ in (_fold_arrays(data, f) for f in folds)
    ]


def score_configuration(
    data: TrainingSet, config: TuningConfig, family_name: str, params: dict[str, Any]
) -> TuningResult:
    """A configuration chosen by an earlier search, scored on this window's folds exactly as a trial is: what a
    refit between two searches records (its fold scores feed the same gates). The one record is not a search: the
    trials that chose the configuration are the earlier search's, and the caller counts those."""
    started = time.perf_counter()
    folds = make_folds(data, config)
    model_family = family(family_name)
    prepared = _prepared_folds(model_family, data, folds)
    prepare_seconds = time.perf_counter() - started
    scores, sharpes = _score_folds(model_family, prepared, params, folds, data, config)
    seconds = time.perf_counter() - started
    record = TrialRecord(
        family_name, 0, "refit", dict(params), scores, sharpes, seconds - prepare_seconds, config.worker
    )
    return TuningResult([record], record, folds, {family_name: seconds}, prepare_seconds, config.rules)


def _keep(trial, scores: list[FoldScore], rule_sharpes: np.ndarray | None, started: float) -> None:
    trial.set_user_attr("folds", [s.__dict__ for s in scores])
    if rule_sharpes is not None:
        trial.set_user_attr("rule_sharpes", rule_sharpes.tolist())
    trial.set_user_attr("seconds", time.perf_counter() - started)


def _storage(config: TuningConfig):
    if config.storage is None:
        return None
    import optuna
    import sqlalchemy

    # Optuna creates its schema on first use: workers arriving together at an empty database would each try, and
    # all but one fail on a duplicate type. A session-level advisory lock lets one create it and the rest see it.
    engine = sqlalchemy.create_engine(config.storage, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as lock:
            lock.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": OPTUNA_SCHEMA_LOCK})
            try:
                # Heartbeats are "experimental" in Optuna 5 and say so on every storage built.
                warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    config.storage,
                    # A worker that dies mid-trial leaves it RUNNING; its missing heartbeat marks it failed, so the
                    # readers' wait for running trials ends.
                    heartbeat_interval=config.heartbeat_seconds,
                    grace_period=config.heartbeat_seconds * 4,
                    engine_kwargs={"pool_pre_ping": True},
                )
            finally:
                lock.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": OPTUNA_SCHEMA_LOCK})
    finally:
        engine.dispose()


def counted_trials(study, n_trials: int, shared: bool, timeout_seconds: float) -> list:
    """The study's result: its first `n_trials` finished trials by trial number, read once no lower-numbered trial
    is still running. Every reader gets the same set whenever it reads. A worker that started a trial just before
    the budget was spent runs it past the budget; such trials are left out of the choice and the trial count alike.
    """
    import optuna
    from optuna.trial import TrialState

    finished_states = _finished_states()
    deadline = time.monotonic() + timeout_seconds
    while True:
        trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
        finished = [t for t in trials if t.state in finished_states]
        cutoff = finished[n_trials - 1].number if len(finished) >= n_trials else math.inf
        unsettled = [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING) and t.number < cutoff]
        if not unsettled:
            return finished[:n_trials]
        if shared:
            optuna.storages.fail_stale_trials(study)
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"study {study.study_name}: trials {[t.number for t in unsettled]} still running after "
                f"{timeout_seconds:.0f} s; a result read now could change when they finish"
            )
        time.sleep(0.5)


def score_fold(data: TrainingSet, fold: Fold, model: TrainedModel) -> tuple[FoldScore, RuleBlock]:
    """Train and test log loss and AUC of one fold's model, and its test block's predictions, ready for the
    trading rules."""
    train, test = _fold_arrays(data, fold)
    p_test = model.predict_proba(data.x[test])
    p_train = model.predict_proba(data.x[train])
    y_train = data.label[train]
    labelled = data.label[test] >= 0
    y_test, p_labelled = data.label[test][labelled], p_test[labelled]
    base_rate = float(y_train.mean())
    score = FoldScore(
        fold=fold.number,
        val_log_loss=log_loss(y_test, p_labelled),
        val_auc=roc_auc(y_test, p_labelled),
        train_log_loss=log_loss(y_train, p_train),
        train_auc=roc_auc(y_train, p_train),
        baseline_log_loss=log_loss(y_test, np.full(len(y_test), base_rate)),
        n_train=len(train),
        n_test=len(test),
    )
    return score, RuleBlock.of(data.frame[test].with_columns(pl.Series("probability", p_test)))


def fit_final(data: TrainingSet, family_name: str, params: dict[str, Any], trainer: Trainer) -> TrainedModel:
    """The chosen configuration fitted on every labelled row of the cross-validation region."""
    model_family = family(family_name)
    labelled = data.labelled
    return model_family.fit(model_family.prepare(data.x[labelled], data.label[labelled]), params, trainer)
