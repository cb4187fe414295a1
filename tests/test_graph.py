"""The whole graph, in-process, over a small range: data backfill, retrain, promotion, hourly job."""

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
from api import api_client
from polars.testing import assert_frame_equal
from services import free_port, stop_group

from alphapulse_assets.definitions import build_definitions
from alphapulse_assets.features.catalog import FEATURE_NAMES
from alphapulse_assets.features.store import rows_of_version, snapshot_bytes
from alphapulse_assets.monitoring.reference import drift_features
from alphapulse_assets.promotion.assets import latest_decision, manifest_key, scoring_model
from alphapulse_assets.promotion.checks import champion_change_check, latest_check_evaluation
from alphapulse_assets.runner import run_job
from alphapulse_assets.settings import Settings
from alphapulse_assets.training.gates import EVALUATION_GATES
from alphapulse_assets.training.models import score_frame
from alphapulse_contract.baseline import RulesBaseline
from alphapulse_contract.scoring import MANIFEST_KEY, MAX_SMOOTHING_HOURS, SNAPSHOT_KEY, ModelManifest

FIRST, LAST = "2025-03-01-00:00", "2025-03-13-23:00"
LAST_HOUR = datetime(2025, 3, 13, 23, tzinfo=UTC)
# The retrain decides a day before the last hour: its champion is in force from the hour after, so the last day's
# predictions and drift reports are its own, out of sample.
DECISION = "2025-03-12-23:00"
DECISION_HOUR = datetime(2025, 3, 12, 23, tzinfo=UTC)
HOURS = 13 * 24


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    settings = Settings.from_env({**__import__("os").environ, "ALPHAPULSE_HOME": str(home)})
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        data = run_job(defs, instance, "data_job", partition_range=(FIRST, LAST))
        assert data.success, data.error
        retrain = run_job(defs, instance, "retrain_job", partition_key=DECISION)
        assert retrain.success, retrain.error
        hourly = run_job(defs, instance, "hourly_job", partition_key=LAST)
        assert hourly.success, hourly.error
        yield defs, instance, settings


def table(defs, name):
    return defs.resources["warehouse"].query(f"SELECT * FROM {name} ORDER BY 1")


def test_data_tables_hold_one_row_per_symbol_hour(graph):
    defs, _, _ = graph
    for name in ("prices", "news_sentiment", "features"):
        frame = table(defs, name)
        assert frame.height == HOURS * 2, name
        assert frame.select("ts", "symbol").is_duplicated().sum() == 0, name
    assert table(defs, "news").height > HOURS  # about 1.7 headlines an hour for two symbols


def test_every_asset_is_materialized_and_checks_pass(graph):
    defs, instance, _ = graph
    for key in ("prices", "news", "news_sentiment", "features", "drift_report", "predictions"):
        assert LAST in instance.get_materialized_partitions(dg.AssetKey(key)), key
    for key in ("trained_model", "model_evaluation", "promotion_decision", "promoted_model"):
        assert DECISION in instance.get_materialized_partitions(dg.AssetKey(key)), key
    evaluation = instance.get_latest_materialization_event(dg.AssetKey("model_evaluation")).asset_materialization
    for key in ("oos_accuracy", "oos_auc", "oos_log_loss", "oos_sharpe", "oos_max_drawdown", "n_oos", "equity_curve"):
        assert key in evaluation.metadata, key
    checks = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [
            dg.AssetCheckKey(dg.AssetKey("prices"), name)
            for name in ("prices_complete", "prices_unique", "prices_ohlc_valid")
        ]
    )
    assert len(checks) == 3


def test_promotion_published_a_loadable_manifest(graph):
    defs, _, settings = graph
    decision = table(defs, "promotion_decisions").row(0, named=True)
    assert decision["promote"], decision["summary"]
    store = defs.resources["object_store"]
    manifest = ModelManifest.from_json(store.get_bytes(MANIFEST_KEY))
    assert manifest.version == decision["challenger_version"]
    assert manifest.feature_names == list(FEATURE_NAMES)
    assert datetime.fromisoformat(manifest.training_window["validation_end"]) == DECISION_HOUR
    assert table(defs, "promoted_model").height == 1


def test_api_answers_what_predictions_recorded(graph, tmp_path):
    """Research/live parity: for each of a run of past hours, the API given that hour's online snapshot and the
    champion answers exactly (bit for bit) what the `predictions` asset recorded for it."""
    defs, instance, settings = graph
    store = defs.resources["object_store"]
    newest_snapshot = store.get_bytes(SNAPSHOT_KEY)
    # A backfill scores the hours together; the API scores one row at a time.
    backfill = run_job(
        defs,
        instance,
        "hourly_job",
        partition_range=("2025-03-13-06:00", "2025-03-13-22:00"),
        asset_selection=[dg.AssetKey("predictions")],
    )
    assert backfill.success, backfill.error
    recorded = table(defs, "predictions").filter(pl.col("ts") >= datetime(2025, 3, 13, 6, tzinfo=UTC))
    assert recorded.height == 18 * 2
    features = table(defs, "features")
    version = ModelManifest.from_json(store.get_bytes(MANIFEST_KEY)).feature_version
    try:
        _assert_api_answers(defs, settings, recorded, features, version, tmp_path)
    finally:
        store.put_bytes(SNAPSHOT_KEY, newest_snapshot)


def _assert_api_answers(defs, settings, recorded, features, version, tmp_path) -> None:
    """For each hour of `recorded` predictions, publish that hour's online snapshot (with its earlier hours, as the
    features asset publishes it) and check the API answers every row exactly as recorded."""
    store, warehouse = defs.resources["object_store"], defs.resources["warehouse"]
    with api_client(settings.object_store_root, tmp_path / "audit") as client:
        for hour, rows in recorded.group_by("ts", maintain_order=True):
            earlier = rows_of_version(warehouse, hour[0] - timedelta(hours=MAX_SMOOTHING_HOURS - 1), hour[0], version)
            store.put_bytes(SNAPSHOT_KEY, snapshot_bytes(features.filter(pl.col("ts") == hour[0]), version, earlier))
            client.app.state.services.serving.refresh()
            for row in rows.iter_rows(named=True):
                body = client.post("/predict", json={"symbol": row["symbol"]}).json()
                assert body["source"] == "primary", body
                assert body["probability"] == row["probability_up"], (hour, row["symbol"])
                assert body["smoothed_probability"] == row["smoothed_probability_up"], (hour, row["symbol"])
                assert body["signal"] == row["signal"] and body["model_version"] == row["model_version"]
                assert datetime.fromisoformat(body["feature_timestamp"]) == hour[0]


def test_a_rule_that_averages_hours_is_served_as_predictions_recorded_it(graph, tmp_path):
    """The champion traded by a 6-hour mean (its manifest says so): `predictions` averages its scores of each
    hour and the five before, the first hours of a range included, and the API, given the snapshot with its
    earlier rows, answers the same bits."""
    defs, instance, settings = graph
    store = defs.resources["object_store"]
    promoted = store.get_bytes(MANIFEST_KEY)
    champion = ModelManifest.from_json(promoted)
    own = manifest_key(champion.version)
    original, newest_snapshot = store.get_bytes(own), store.get_bytes(SNAPSHOT_KEY)
    averaging = replace(champion, smoothing_hours=6).to_json()
    hours = ("2025-03-13-12:00", "2025-03-13-20:00")
    try:
        store.put_bytes(own, averaging)
        store.put_bytes(MANIFEST_KEY, averaging)
        backfill = run_job(
            defs, instance, "hourly_job", partition_range=hours, asset_selection=[dg.AssetKey("predictions")]
        )
        assert backfill.success, backfill.error
        recorded = table(defs, "predictions").filter(
            (pl.col("ts") >= datetime(2025, 3, 13, 12, tzinfo=UTC))
            & (pl.col("ts") <= datetime(2025, 3, 13, 20, tzinfo=UTC))
        )
        assert recorded.height == 9 * 2
        assert (recorded["smoothed_probability_up"] != recorded["probability_up"]).all()
        # The first hour of the range averaged the five hours before it too.
        first = recorded.filter(pl.col("ts") == pl.col("ts").min()).sort("symbol")
        model = scoring_model(ModelManifest.from_json(averaging))
        before = table(defs, "features").filter(
            (pl.col("ts") > datetime(2025, 3, 13, 6, tzinfo=UTC))
            & (pl.col("ts") <= datetime(2025, 3, 13, 12, tzinfo=UTC))
        )
        means = score_frame(model, before).group_by("symbol").agg(pl.col("probability").mean()).sort("symbol")
        np.testing.assert_allclose(first["smoothed_probability_up"], means["probability"], rtol=1e-12)
        _assert_api_answers(defs, settings, recorded, table(defs, "features"), champion.feature_version, tmp_path)
    finally:
        store.put_bytes(own, original)
        store.put_bytes(MANIFEST_KEY, promoted)
        store.put_bytes(SNAPSHOT_KEY, newest_snapshot)
        restored = run_job(
            defs, instance, "hourly_job", partition_range=hours, asset_selection=[dg.AssetKey("predictions")]
        )
        assert restored.success, restored.error


def test_drift_report_written(graph):
    defs, instance, settings = graph
    report = instance.get_latest_materialization_event(dg.AssetKey("drift_report")).asset_materialization
    assert report.metadata["drift_status"].value in ("ok", "warning", "critical")
    # Every feature but the clock's (hour of day, day of week: a window's calendar mix cannot drift), and a header.
    tested = drift_features(FEATURE_NAMES)
    assert len(tested) == len(FEATURE_NAMES) - 5
    assert (settings.object_store_root / "reports/drift/20250313T23.html").read_text().count("<tr") == len(tested) + 1
    assert report.metadata["reference"].value.startswith("champion ")
    assert report.metadata["missing_rows"].value == 0
    # The Evidently page (ALPHAPULSE_EVIDENTLY_EVERY_HOURS=1 in the tests), linked from the metadata.
    evidently = settings.object_store_root / "reports/drift/20250313T23-evidently.html"
    assert report.metadata["evidently_report"].value == evidently.resolve().as_uri()
    page = evidently.read_text()
    assert "<html" in page[:2000].lower() and "Dataset Drift" in page and "rsi_14" in page
    assert 0.0 <= report.metadata["evidently_drifted_share"].value <= 1.0
    # Prediction and live-performance drift are measured too; one hour of predictions is too little to judge.
    assert report.metadata["prediction_drift"].value in ("ok", "warning", "drift", "insufficient_data")
    assert report.metadata["performance_status"].value == "insufficient_data"
    summary = table(defs, "drift_summary").row(0, named=True)
    assert summary["drift_status"] == report.metadata["drift_status"].value and summary["evidently_report"]


def test_rerunning_ranges_in_other_chunks_changes_nothing(graph):
    defs, instance, _ = graph
    before = {name: table(defs, name).sort("ts", "symbol") for name in ("prices", "news_sentiment", "features")}
    snapshot = defs.resources["object_store"].get_bytes(SNAPSHOT_KEY)
    for chunk in (("2025-03-02-05:00", "2025-03-05-17:00"), ("2025-03-05-18:00", "2025-03-09-00:00")):
        assert run_job(defs, instance, "data_job", partition_range=chunk).success
    for name, frame in before.items():
        assert_frame_equal(table(defs, name).sort("ts", "symbol"), frame, check_exact=False, abs_tol=1e-9)
    assert defs.resources["object_store"].get_bytes(SNAPSHOT_KEY) == snapshot, "old backfills keep the newest snapshot"


def test_retraining_the_same_hour_is_deterministic_and_decides_the_same(graph):
    """A decision reads the champion in force at its hour, not the one it made itself: re-running it is idempotent."""
    defs, instance, _ = graph
    first = table(defs, "trained_model").row(0, named=True)
    decided = table(defs, "promotion_decisions").row(0, named=True)
    assert run_job(defs, instance, "retrain_job", partition_key=DECISION).success
    again = table(defs, "trained_model").row(0, named=True)
    assert again["sha256"] == first["sha256"]
    decision = table(defs, "promotion_decisions").row(0, named=True)
    assert (decision["action"], decision["champion_after"]) == (decided["action"], decided["champion_after"])
    assert decision["champion_version"] is None
    assert table(defs, "promotion_decisions").height == 1 and table(defs, "promoted_model").height == 1


def test_a_decision_before_a_recorded_one_is_refused(graph):
    """Deciding at an earlier hour would change the champion every later decision started from: refused, clearly,
    before anything is written."""
    defs, instance, _ = graph
    outcome = run_job(
        defs,
        instance,
        "retrain_job",
        partition_key="2025-03-12-22:00",
        asset_selection=[dg.AssetKey("promotion_decision")],
    )
    assert not outcome.success and "would come before 1 decision(s) already recorded" in outcome.error
    assert "fresh ALPHAPULSE_HOME" in outcome.error
    assert table(defs, "promotion_decisions").height == 1


def test_hours_before_the_first_champion_are_answered_by_the_rules_baseline(graph):
    """Never a score from a model decided later: hours up to the decision hour have no champion in force, and the
    record says what the API answered then, the rules baseline (abstaining where it cannot)."""
    defs, instance, _ = graph
    outcome = run_job(
        defs,
        instance,
        "signals_job",
        partition_range=("2025-03-12-20:00", "2025-03-13-01:00"),
        asset_selection=[dg.AssetKey("predictions")],
    )
    assert outcome.success, outcome.error
    rows = table(defs, "predictions").filter(pl.col("ts") <= datetime(2025, 3, 13, 1, tzinfo=UTC))
    first_served = datetime(2025, 3, 13, 0, tzinfo=UTC)
    before, after = rows.filter(pl.col("ts") < first_served), rows.filter(pl.col("ts") >= first_served)
    assert before["ts"].n_unique() == 4 and before["model_version"].null_count() == before.height
    assert set(before["source"]) <= {"baseline", "abstain"} and "baseline" in set(before["source"])
    assert set(after["source"]) == {"primary"} and after["model_version"].null_count() == 0
    features = table(defs, "features").join(before.select("ts", "symbol"), on=["ts", "symbol"], how="semi")
    expected = [RulesBaseline().score(values)[0] for values in features.sort("ts", "symbol").to_dicts()]
    assert before.sort("ts", "symbol")["probability_up"].to_list() == expected
    event = instance.get_latest_materialization_event(dg.AssetKey("predictions"))
    assert event.asset_materialization.metadata["range"].value == "2025-03-12-20:00 .. 2025-03-13-01:00"
    observed = instance.fetch_observations(dg.AssetKey("predictions"), limit=1).records[0]
    assert observed.asset_observation.metadata["hours_without_champion"].value == 4


def test_model_assets_fail_clearly_without_data(graph):
    defs, instance, _ = graph
    outcome = run_job(defs, instance, "retrain_job", partition_key="2025-03-03-00:00")
    assert not outcome.success and "materialize (backfill) the features asset over that range" in outcome.error


def test_training_is_an_mlflow_run_with_a_registered_model(graph):
    import mlflow

    defs, _, settings = graph
    trained = table(defs, "trained_model").row(0, named=True)
    client = mlflow.MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    run = client.get_run(trained["mlflow_run_id"])
    assert run.data.tags["alphapulse.version"] == trained["model_version"]
    assert run.data.tags["alphapulse.sha256"] == trained["sha256"]
    assert run.data.params["family"] == trained["family"] and run.data.params["cv_folds"] == "3"
    assert run.data.params["feature_version"] == trained["feature_version"]
    expected = {"oos_auc", "oos_log_loss", "oos_sharpe", "oos_ic", "psr", "dsr", "placebo_accuracy", "gates_passed"}
    assert expected <= set(run.data.metrics)
    assert any(name.startswith("gate.") for name in run.data.metrics)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "cv_val_log_loss")] == [1, 2, 3]
    assert run.info.status == "FINISHED"
    artifacts = {
        a.path for folder in ("plots", "evaluation", "tuning") for a in client.list_artifacts(run.info.run_id, folder)
    }
    assert {"plots/equity_curve.png", "plots/feature_importance.png", "evaluation/gates.json"} <= artifacts
    assert {"tuning/trials.json", "tuning/folds.json"} <= artifacts
    version = client.get_model_version(trained["registered_model"], trained["registered_version"])
    assert version.run_id == run.info.run_id and version.tags["alphapulse.version"] == trained["model_version"]
    evaluation = table(defs, "model_evaluation").row(0, named=True)
    assert version.tags["gates_passed"] == str(evaluation["gates_passed"]).lower()
    assert settings.mlflow_tracking_uri.startswith("sqlite:///") and str(settings.home) in settings.mlflow_tracking_uri


def test_the_registered_model_is_what_the_api_serves(graph, monkeypatch):
    """`models:/<name>/<version>` loads through MLflow and predicts exactly what `predictions` recorded."""
    import mlflow.artifacts
    import mlflow.pyfunc

    defs, _, settings = graph
    trained = table(defs, "trained_model").row(0, named=True)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", settings.mlflow_tracking_uri)
    uri = f"models:/{trained['registered_model']}/{trained['registered_version']}"
    model = mlflow.pyfunc.load_model(uri)
    shipped = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri)) / "code"
    assert sorted(p.name for p in shipped.iterdir()) == ["alphapulse_contract"], "the model ships the contract only"
    rows = table(defs, "features").filter(pl.col("ts") == LAST_HOUR).sort("symbol")
    served = model.predict(rows.select(FEATURE_NAMES).to_pandas())["probability_up"].to_numpy()
    recorded = table(defs, "predictions").filter(pl.col("ts") == LAST_HOUR).sort("symbol")["probability_up"]
    assert served == pytest.approx(recorded.to_numpy(), abs=1e-12)


def test_mlflow_models_serve_serves_the_registered_model(graph, tmp_path):
    """The command the issue names, with the local environment (no network to build one here)."""
    import json
    import os
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    defs, _, settings = graph
    trained = table(defs, "trained_model").row(0, named=True)
    port = free_port()
    uri = f"models:/{trained['registered_model']}/{trained['registered_version']}"
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    # MLflow execs `uvicorn` by name: the environment's bin directory must be on PATH, as under `uv run`.
    path = f"{mlflow_cli.parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri, "PATH": path}
    command = [str(mlflow_cli), "models", "serve", "-m", uri, "--env-manager", "local", "-h", "127.0.0.1"]
    log = (tmp_path / "serve.log").open("wb")
    # Its own process group: MLflow runs uvicorn as a child, and both must go when the test ends.
    server = subprocess.Popen(
        [*command, "-p", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        rows = table(defs, "features").filter(pl.col("ts") == LAST_HOUR).sort("symbol").select(FEATURE_NAMES)
        body = json.dumps({"dataframe_split": {"columns": rows.columns, "data": rows.rows()}}).encode()
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/invocations", body, {"Content-Type": "application/json"}
                )
                with urllib.request.urlopen(request, timeout=10) as response:
                    answer = json.loads(response.read())
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
                time.sleep(1.0)
    finally:
        # Killed if it does not drain in time, rather than a timeout here hiding how the test itself ended.
        stop_group(server)
    served = [row["probability_up"] for row in answer["predictions"]]
    recorded = table(defs, "predictions").filter(pl.col("ts") == LAST_HOUR).sort("symbol")["probability_up"]
    assert served == pytest.approx(recorded.to_list(), abs=1e-12)


def test_a_validation_window_without_labels_fails_before_any_tuning(graph):
    """A symbol whose prices stop early (delisted) leaves the validation window short of labels: the retrain
    says so at once, naming the window, instead of after the whole search."""
    defs, instance, _ = graph
    warehouse = defs.resources["warehouse"]
    cut = "ts > TIMESTAMPTZ '2025-03-11 00:00:00+00' AND symbol = 'ETHUSDT'"
    with warehouse.connect() as con:
        con.execute(f"CREATE TABLE delisted AS SELECT * FROM prices WHERE {cut}")
        con.execute(f"DELETE FROM prices WHERE {cut}")
    try:
        outcome = run_job(defs, instance, "retrain_job", partition_key=DECISION)
    finally:
        with warehouse.connect() as con:
            con.execute("INSERT INTO prices SELECT * FROM delisted")
            con.execute("DROP TABLE delisted")
    assert not outcome.success and "labelled (symbol, hour) rows in [" in outcome.error
    failed = instance.get_records_for_run(outcome.run_id).records
    started = {
        r.event_log_entry.step_key
        for r in failed
        if r.event_log_entry.dagster_event
        and r.event_log_entry.dagster_event.event_type == dg.DagsterEventType.STEP_START
    }
    assert started == {"trained_model"}
    assert not any("Trial" in (r.event_log_entry.user_message or "") for r in failed)


def test_drift_is_reported_before_any_champion(graph):
    """Before the first champion the newest data is still compared, with the last trained model's training window
    (no model yet: said so), and its completeness is reported: a user sees why nothing passes."""
    defs, instance, _ = graph
    warehouse = defs.resources["warehouse"]
    hours = ("2025-03-12-21:00", DECISION)  # the champion decided at DECISION serves from the hour after
    outcome = run_job(
        defs, instance, "hourly_job", partition_range=hours, asset_selection=[dg.AssetKey("drift_report")]
    )
    assert outcome.success, outcome.error
    rows = warehouse.query(
        "SELECT * FROM drift_summary WHERE ts >= TIMESTAMPTZ '2025-03-12 21:00:00+00' "
        "AND ts <= TIMESTAMPTZ '2025-03-12 23:00:00+00' ORDER BY ts"
    )
    try:
        assert rows["reference_kind"].to_list() == ["none", "none", "last_trained"]
        assert rows["drift_status"].to_list()[:2] == ["no_reference", "no_reference"]
        trained = table(defs, "trained_model").filter(pl.col("ts") == DECISION_HOUR)["model_version"].item()
        last = rows.row(2, named=True)
        assert last["reference_version"] == trained and last["champion_version"] is None
        assert last["drift_status"] in ("ok", "warning", "critical")
        assert last["performance_status"] == last["prediction_level"] == "no_champion"
        assert rows["missing_rows"].to_list() == [0, 0, 0]
        features = warehouse.query("SELECT * FROM drift_report WHERE ts = TIMESTAMPTZ '2025-03-12 23:00:00+00'")
        assert features.height == len(drift_features(FEATURE_NAMES)) and set(features["reference_version"]) == {trained}
    finally:
        with warehouse.connect() as con:  # the other tests read this module's drift tables as the graph left them
            for name in ("drift_summary", "drift_report"):
                con.execute(
                    f"DELETE FROM {name} WHERE ts >= TIMESTAMPTZ '2025-03-12 21:00:00+00' "
                    "AND ts <= TIMESTAMPTZ '2025-03-12 23:00:00+00'"
                )


def test_a_promotion_outside_a_replay_leaves_an_alert(graph):
    defs, _, settings = graph
    store = defs.resources["object_store"]
    records = [json.loads(store.get_bytes(key)) for key in store.list_keys("alerts/")]
    # One per promotion decided (the retrain of the same hour, in another test, decides it again).
    promotions = [r for r in records if r["kind"] == "promotion"]
    champion = ModelManifest.from_json(store.get_bytes(MANIFEST_KEY)).version
    promotion = promotions[0]
    assert promotion["partition"] == DECISION and promotion["title"] == f"promote: none -> {champion}"
    assert promotion["details"]["trigger"] == "manual" and promotion["details"]["summary"]
    assert all(r["partition"] == DECISION for r in promotions)


def _check(instance, asset: str, name: str, partition: str = DECISION) -> dg.AssetCheckEvaluation:
    """The latest evaluation of a check at one partition, as the UI's Checks tab shows it."""
    return latest_check_evaluation(instance, dg.AssetCheckKey(dg.AssetKey(asset), name), partition)


def test_every_gate_is_a_check_that_agrees_with_the_evaluation_table(graph):
    defs, instance, _ = graph
    evaluation = table(defs, "model_evaluation").row(0, named=True)
    gates = json.loads(evaluation["gates"])
    assert [g["name"] for g in gates] == list(EVALUATION_GATES)
    for gate in gates:
        check = _check(instance, "model_evaluation", gate["name"])
        assert check.passed == gate["passed"] and check.severity == dg.AssetCheckSeverity.ERROR, gate["name"]
        assert check.metadata["verdict"].value == ("passed" if gate["passed"] else "failed")
        for key in ("value", "threshold"):
            if gate[key] is None:
                assert check.metadata[key].value is None
            else:
                assert check.metadata[key].value == pytest.approx(gate[key]), (gate["name"], key)
        assert check.metadata["model_version"].value == evaluation["model_version"]
    # The first champion: there was nothing to compare it with, and the checks say so.
    comparison = _check(instance, "promotion_decision", "champion_comparison")
    assert comparison.passed and comparison.metadata["verdict"].value == "not applicable"
    assert comparison.metadata["reason"].value == "no champion yet"
    assert _check(instance, "promotion_decision", "shadow_record").metadata["verdict"].value == "not applicable"
    guard = _check(instance, "promotion_decision", "new_champion_passed_its_gates")
    assert guard.passed and guard.blocking and guard.metadata["action"].value == "promote"


def test_a_failed_check_of_record_stops_a_promotion(graph):
    """The evaluation table and the checks are written from one list of gates; when Dagster's record of a check
    says otherwise (an hour evaluated before the checks existed, or a record altered), the record wins: the decision
    refuses, and the blocking check would stop a decision that promoted anyway. Nothing is served or announced."""
    defs, instance, _ = graph
    store, warehouse = defs.resources["object_store"], defs.resources["warehouse"]
    evaluation = table(defs, "model_evaluation").row(0, named=True)
    promoted = latest_decision(warehouse, DECISION_HOUR)
    assert promoted["action"] == "promote"
    served, promotions = store.get_bytes(MANIFEST_KEY), table(defs, "promoted_model").height
    alerts_before = set(store.list_keys("alerts/"))
    instance.report_runless_asset_event(
        dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey("model_evaluation"),
            check_name="deflated_sharpe",
            passed=False,
            metadata={"model_version": evaluation["model_version"]},
            severity=dg.AssetCheckSeverity.ERROR,
            partition=DECISION,
        )
    )
    decide_again = [dg.AssetKey("promotion_decision"), dg.AssetKey("promoted_model")]
    try:
        # The guard, shown the promotion decided before the record changed: it fails, naming the check.
        guard = champion_change_check(instance, warehouse, promoted)
        assert not guard.passed and "evaluation check deflated_sharpe failed" in guard.description

        outcome = run_job(defs, instance, "retrain_job", partition_key=DECISION, asset_selection=decide_again)
        assert outcome.success, outcome.error
        decision = latest_decision(warehouse, DECISION_HOUR)
        assert decision["action"] == "keep" and "deflated_sharpe" in decision["summary"]
        recorded = {g["name"]: g for g in json.loads(decision["gates"])}["deflated_sharpe"]
        assert not recorded["passed"] and recorded["detail"].endswith("its asset check failed")
        assert _check(instance, "promotion_decision", "new_champion_passed_its_gates").passed
        assert store.get_bytes(MANIFEST_KEY) == served and table(defs, "promoted_model").height == promotions
        assert not [k for k in set(store.list_keys("alerts/")) - alerts_before if "promotion" in k]
    finally:  # the evaluation's own checks again, and the decision they make, for whatever runs next
        for selection in ([dg.AssetKey("model_evaluation")], decide_again):
            restored = run_job(defs, instance, "retrain_job", partition_key=DECISION, asset_selection=selection)
            assert restored.success, restored.error
        assert latest_decision(warehouse, DECISION_HOUR)["action"] == "promote"
