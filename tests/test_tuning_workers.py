"""Scale-out of tuning: worker processes tune one set of Optuna studies on PostgreSQL. The trials are shared (one
budget, every worker's trials in every reader's result) and none is lost (every trial a worker ran is in the study,
finished, and counted)."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest

N_TRIALS = 8
FAMILIES = ("logistic", "xgboost")

WORKER = textwrap.dedent(
    """
    import json, sys, time
    from datetime import UTC, datetime, timedelta
    from pathlib import Path

    from alphapulse_assets.features.catalog import FEATURE_NAMES
    from alphapulse_assets.training.data import labelled_rows
    from alphapulse_assets.training.families import Trainer
    from alphapulse_assets.training.synthetic import lead_lag_market
    from alphapulse_assets.training.tuning import TrainingSet, TuningConfig, rule_grid, tune

    storage, worker, barrier, n_workers, n_trials, families = sys.argv[1:7]
    start = datetime(2024, 1, 1, tzinfo=UTC)
    prices, features = lead_lag_market(start, 30 * 24, seed=11)
    frame = labelled_rows(features, prices, ["BTCUSDT", "ETHUSDT"], start, start + timedelta(days=30), 1, 0.0)
    data = TrainingSet.from_frame(frame, list(FEATURE_NAMES))
    config = TuningConfig(
        families=tuple(families.split(",")), n_trials=int(n_trials), n_folds=3, window="expanding",
        horizon_hours=1, embargo_hours=12, rules=rule_grid(), cost_bps=2.0, trainer=Trainer(seed=5),
        storage=storage, study_prefix="test/2024-01-31T00", worker=worker, sampler_stream=worker,
    )
    # Start together, or the first worker could spend the whole budget before the second arrives.
    Path(barrier, worker).touch()
    while len(list(Path(barrier).iterdir())) < int(n_workers):
        time.sleep(0.05)
    result = tune(data, config)
    print(json.dumps({
        "trials": [[t.family, t.number, t.state, t.worker, t.params, t.cv_log_loss] for t in result.trials],
        "best": [result.best.family, result.best.number],
    }))
    """
)


def run_workers(storage: str, tmp_path: Path, names: list[str]) -> dict[str, dict]:
    barrier = tmp_path / f"barrier-{'-'.join(names)}"
    barrier.mkdir()
    command = [sys.executable, "-c", WORKER, storage]
    args = [str(barrier), str(len(names)), str(N_TRIALS), ",".join(FAMILIES)]
    processes = {
        name: subprocess.Popen([*command, name, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in names
    }
    results = {}
    for name, process in processes.items():
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-3000:]
        results[name] = json.loads(out.strip().splitlines()[-1])
    return results


@pytest.fixture
def storage(postgres_url) -> str:
    return postgres_url


def test_two_workers_share_one_study_per_family_and_lose_no_trial(storage, tmp_path):
    results = run_workers(storage, tmp_path, ["worker-a", "worker-b"])

    names = optuna.get_all_study_names(storage)
    assert len(names) == len(FAMILIES), "both workers met in one study per family"
    assert all(name.startswith("test/2024-01-31T00/") for name in names)
    counted = []
    for name in sorted(names):
        trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
        states = {t.state.name for t in trials}
        assert states <= {"COMPLETE", "PRUNED"}, f"{name}: nothing left running or failed ({states})"
        # One budget for the study: a worker stops once it is spent, so at most the other's in-flight trial is over.
        assert N_TRIALS <= len(trials) <= N_TRIALS + 1, name
        assert sorted(t.number for t in trials) == list(range(len(trials))), f"{name}: no trial number missing"
        assert {t.user_attrs["worker"] for t in trials} == {"worker-a", "worker-b"}, f"{name}: both workers ran trials"
        family_name = name.split("/")[2]
        counted += [(family_name, t.number, t.user_attrs["worker"]) for t in trials if t.number < N_TRIALS]

    # Every reader counts the budget's trials from every worker, with the same scores: none is lost to either.
    for result in results.values():
        assert sorted((f, n, w) for f, n, _, w, _, _ in result["trials"]) == sorted(counted)
    a, b = (results[name]["trials"] for name in ("worker-a", "worker-b"))
    assert sorted(map(json.dumps, a)) == sorted(map(json.dumps, b))
    assert results["worker-a"]["best"] == results["worker-b"]["best"]
    assert all(state == "complete" or len(params) for _, _, state, _, params, _ in a)


def test_a_rerun_reads_the_finished_studies_and_adds_no_trial(storage, tmp_path):
    """A retried trained_model step meets its own finished studies: it reads them instead of tuning again."""
    run_workers(storage, tmp_path, ["first"])
    before = set(optuna.get_all_study_names(storage))
    again = run_workers(storage, tmp_path, ["again"])
    assert set(optuna.get_all_study_names(storage)) == before
    assert {w for _, _, _, w, _, _ in again["again"]["trials"]} == {"first"}


def test_workers_are_seeded_apart_and_other_rows_or_settings_make_another_study():
    from datetime import UTC, datetime, timedelta

    from alphapulse_assets.features.catalog import FEATURE_NAMES
    from alphapulse_assets.training.data import labelled_rows
    from alphapulse_assets.training.families import Trainer
    from alphapulse_assets.training.synthetic import lead_lag_market
    from alphapulse_assets.training.tuning import TrainingSet, TuningConfig, family_seed, rule_grid, study_fingerprint

    assert family_seed(5, "xgboost", "worker-1") != family_seed(5, "xgboost", "worker-2")
    assert family_seed(5, "xgboost") == family_seed(5, "xgboost", None), "trained_model keeps the run's own stream"
    start = datetime(2024, 1, 1, tzinfo=UTC)
    prices, features = lead_lag_market(start, 10 * 24, seed=11)
    frame = labelled_rows(features, prices, ["BTCUSDT"], start, start + timedelta(days=10), 1, 0.0)
    data = TrainingSet.from_frame(frame, list(FEATURE_NAMES))
    config = TuningConfig(("logistic",), 4, 3, "expanding", 1, 12, rule_grid(), 2.0, Trainer(seed=5))
    fingerprint = study_fingerprint(data, config)
    assert study_fingerprint(data, config) == fingerprint
    flipped = data.label.copy()
    flipped[0] = 1 - flipped[0]
    assert study_fingerprint(TrainingSet(data.x, flipped, data.hours, data.frame), config) != fingerprint
    dearer = TuningConfig(("logistic",), 4, 3, "expanding", 1, 12, rule_grid(), 3.0, Trainer(seed=5))
    assert study_fingerprint(data, dearer) != fingerprint
    # The worker and the budget are not what trials are scored on: workers with their own id meet.
    assert (
        study_fingerprint(
            data, TuningConfig(("logistic",), 9, 3, "expanding", 1, 12, rule_grid(), 2.0, Trainer(seed=5), worker="w")
        )
        == fingerprint
    )
