"""The model's life cycle against real processes: a real `mlflow server` on loopback with its
backend store in PostgreSQL, the `chaos` commands a data scientist types, and `chaos serve`
loading what the registry says.

train → promote (the gate) → serve the alias; a model fitted on shuffled labels refused;
retrain only when the tables change; the registry away when a server starts, and after.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import requests
import yaml
from conftest import CUSTOMERS_CSV, engine_with_indicators, request_rows, throwaway_pg_database
from sqlalchemy import text
from support.logs import exited_log
from support.registry import CLIENT_ENV, mlflow_registry
from support.server import MODEL_DIR, REPO, VENV_BIN, free_port
from support.tcp_proxy import TcpProxy

from chaos_pyfunc import package_version
from chaos_pyfunc.db import load_csv
from chaos_pyfunc.registry import REGISTERED_MODEL, version_uri

from .conftest import running_server, score, server_env

pytestmark = [pytest.mark.e2e, pytest.mark.data]

# A small recipe: the life cycle is under test here, not the model's quality (test_model.py).
QUICK = ("--max-iter", "60", "--learning-rate", "0.1")
COMMAND_TIMEOUT = 600


@dataclass
class Lifecycle:
    registry_url: str
    data_url: str  # customers and socio_eco, as the bank's database holds them
    workdir: Path

    def env(self, registry_url: str | None = None) -> dict[str, str]:
        return server_env({"MLFLOW_TRACKING_URI": registry_url or self.registry_url,
                           "CHAOS_DATABASE_URL": self.data_url, **CLIENT_ENV})

    def chaos(self, *args: str, registry_url: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(VENV_BIN / "chaos"), *args], env=self.env(registry_url), cwd=self.workdir,
                              capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False)

    def train(self, *args: str) -> str:
        """`chaos train` with the quick recipe; the registered version's number."""
        done = self.chaos("train", *QUICK, *args)
        assert done.returncode == 0, done.stderr[-3000:]
        version = json.loads(done.stdout[done.stdout.index("{"):])["version"]
        assert version is not None
        return str(version)

    def client(self) -> mlflow.MlflowClient:
        return mlflow.MlflowClient(tracking_uri=self.registry_url, registry_uri=self.registry_url)

    def holder(self, alias: str) -> str | None:
        try:
            return str(self.client().get_model_version_by_alias(REGISTERED_MODEL, alias).version)
        except mlflow.exceptions.MlflowException:
            return None

    def versions(self) -> set[str]:
        return {str(v.version) for v in self.client().search_model_versions(f"name='{REGISTERED_MODEL}'")}

    def tags(self, version: str) -> dict[str, str]:
        return dict(self.client().get_model_version(REGISTERED_MODEL, version).tags)


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lifecycle]:
    workdir = tmp_path_factory.mktemp("lifecycle")
    with throwaway_pg_database() as backend, throwaway_pg_database(with_indicators=True) as data:
        engine = engine_with_indicators(data)
        load_csv(engine, "customers", CUSTOMERS_CSV)
        engine.dispose()
        with mlflow_registry(backend, workdir) as registry:
            yield Lifecycle(registry.url, data, workdir)


@pytest.fixture(scope="module")
def staged(lifecycle: Lifecycle) -> str:
    """A version trained on the customers table and promoted to staging: the first one."""
    version = lifecycle.train()
    promoted = lifecycle.chaos("promote", version, "--alias", "staging")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr[-3000:]
    return version


@pytest.fixture(scope="module")
def shuffled(lifecycle: Lifecycle, staged: str) -> str:
    """A version fitted on the same contacts with their outcomes shuffled: learns nothing real."""
    frame = pd.read_csv(CUSTOMERS_CSV)
    frame["subscription"] = frame["subscription"].sample(frac=1.0, random_state=0).to_numpy()
    path = lifecycle.workdir / "shuffled.csv"
    frame.to_csv(path, index=False)
    return lifecycle.train("--customers", str(path))


def test_train_registers_and_the_gate_passes_the_first_version_to_staging(lifecycle: Lifecycle,
                                                                         staged: str) -> None:
    assert lifecycle.holder("staging") == staged
    tags = lifecycle.tags(staged)
    assert tags["gate.staging.result"] == "passed"
    assert tags["gate.staging.against"] == "none"
    figures = json.loads(tags["gate.staging.figures"])["candidate"]
    assert {"backtest_roc_auc", "backtest_brier", "random_roc_auc", "random_brier",
            "fitted_roc_auc", "fitted_brier"} <= set(figures)
    run = lifecycle.client().get_run(lifecycle.client().get_model_version(REGISTERED_MODEL, staged).run_id)
    assert run.data.tags["data.customers.rows"] == "38429"
    assert run.data.tags["package_version"] == package_version.installed_version()


def test_the_server_serves_the_alias_and_says_which_version(lifecycle: Lifecycle, staged: str,
                                                           customers: pd.DataFrame) -> None:
    uri = f"models:/{REGISTERED_MODEL}@staging"
    log = lifecycle.workdir / "serve-staging.log"
    started = time.monotonic()
    command = [str(VENV_BIN / "chaos"), "serve", "--model", uri, "--port"]
    with running_server(lifecycle.env(), lifecycle.workdir, log, lambda port: [*command, str(port)]) as url:
        print(f"cold start with a registry download: {time.monotonic() - started:.1f} s to /ping")
        described = requests.get(f"{url}/model", timeout=10)
        assert described.json() == {"uri": uri, "name": REGISTERED_MODEL, "version": staged,
                                    "package_version": package_version.installed_version()}
        assert requests.get(f"{url}/ping", timeout=10).headers["x-model-version"] == staged
        scores = score(url, request_rows(customers, 20, seed=11))
        assert len(scores) == 20 and all(0 <= s <= 1 for s in scores)
    assert (f"serving {REGISTERED_MODEL} version {staged} ({uri}), chaos-pyfunc "
            f"{package_version.installed_version()}") in exited_log(log)


def test_the_data_scientists_path_loads_a_version_and_scores_read_csv(
        lifecycle: Lifecycle, staged: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in lifecycle.env().items():
        if key.startswith(("MLFLOW_", "CHAOS_")):
            monkeypatch.setenv(key, value)
    try:
        model = mlflow.pyfunc.load_model(f"models:/{REGISTERED_MODEL}/{staged}")
        scores = model.predict(pd.read_csv(CUSTOMERS_CSV))["appetence"]
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    assert len(scores) == 38429 and scores.between(0, 1).all()


def test_drift_compares_with_the_training_contacts_of_the_version_served(
        lifecycle: Lifecycle, staged: str, customers: pd.DataFrame, tmp_path: Path) -> None:
    """The version served logs what it scores; `chaos drift` rereads that version's training
    contacts from its run in the tracking store (the database it runs against holds no
    customers at all), and scores them with that version's pipeline."""
    with throwaway_pg_database(with_indicators=True) as no_customers:
        env = {**lifecycle.env(), "CHAOS_PREDICTION_LOG": "true", "CHAOS_PREDICTION_LOG_URL": no_customers}
        command = [str(VENV_BIN / "chaos"), "serve", "--model", version_uri(staged), "--port"]
        with running_server(env, tmp_path, tmp_path / "serve.log", lambda port: [*command, str(port)]) as url:
            rows = request_rows(customers, 1500, seed=12)
            assert len(score(url, rows.iloc[:700])) + len(score(url, rows.iloc[700:])) == 1500
        # The server has exited: what it logged is written.
        done = subprocess.run([str(VENV_BIN / "chaos"), "drift", "--since", "1d", "--output", str(tmp_path)],
                              env={**env, "CHAOS_DATABASE_URL": no_customers}, cwd=tmp_path,
                              capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    summary = json.loads((tmp_path / "drift.json").read_text())
    assert summary["model_version"] == staged and summary["rows"] == 1500
    assert summary["reference"].startswith(f"the training contacts of version {staged} (run ")
    assert summary["reference_rows"] == 38_429 and not summary["alarm"]
    assert "appetence" in {f["feature"] for f in summary["features"]}  # scored by the version's pipeline
    # The report is kept in the registry, beside the version it judged.
    run_id = lifecycle.tags(staged)["drift.run_id"]
    assert f"kept in the registry: run {run_id}" in done.stdout
    client = lifecycle.client()
    run = client.get_run(run_id)
    trained = client.get_run(client.get_model_version(REGISTERED_MODEL, staged).run_id)
    assert run.info.experiment_id == trained.info.experiment_id
    assert (run.data.tags["chaos.report"], run.data.tags["chaos.model_version"]) == ("drift", staged)
    assert run.data.metrics["rows"] == 1500
    assert {a.path for a in client.list_artifacts(run_id, "drift")} == {"drift/drift.html",
                                                                          "drift/drift.json"}
    (tmp_path / "kept").mkdir()
    kept = Path(client.download_artifacts(run_id, "drift/drift.json", str(tmp_path / "kept")))
    assert json.loads(kept.read_text()) == summary


def test_a_model_fitted_on_shuffled_labels_is_refused_with_the_rule(lifecycle: Lifecycle, staged: str,
                                                                    shuffled: str) -> None:
    refused = lifecycle.chaos("promote", shuffled, "--alias", "staging")
    assert refused.returncode == 1, refused.stdout + refused.stderr[-3000:]
    assert re.search(r"refused: roc_auc: fitted_roc_auc 0\.\d+ against 0\.\d+ for version " + staged,
                     refused.stdout), refused.stdout
    assert "staging is unchanged" in refused.stdout
    assert lifecycle.holder("staging") == staged
    tags = lifecycle.tags(shuffled)
    assert tags["gate.staging.result"] == "refused"
    assert tags["gate.staging.against"] == staged
    assert "fitted_roc_auc" in tags["gate.staging.failed"]


def test_production_takes_only_a_version_that_holds_staging(lifecycle: Lifecycle, staged: str,
                                                           shuffled: str) -> None:
    refused = lifecycle.chaos("promote", shuffled, "--alias", "production")
    assert refused.returncode == 1
    rule = f"staging_first: version {shuffled} does not hold staging (version {staged} does)"
    assert rule in refused.stdout
    assert lifecycle.holder("production") is None


def test_force_needs_a_reason_and_records_it(lifecycle: Lifecycle, staged: str, shuffled: str) -> None:
    no_reason = lifecycle.chaos("promote", shuffled, "--alias", "production", "--force")
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    forced = lifecycle.chaos("promote", shuffled, "--alias", "production", "--force",
                             "--reason", "incident 42: rollback drill")
    assert forced.returncode == 0, forced.stdout + forced.stderr[-3000:]
    assert lifecycle.holder("production") == shuffled
    tags = lifecycle.tags(shuffled)
    assert tags["gate.production.result"] == "forced"
    assert tags["gate.production.reason"] == "incident 42: rollback drill"
    # Back to the version that holds staging: a rollback is one promote.
    back = lifecycle.chaos("promote", staged, "--alias", "production")
    assert back.returncode == 0, back.stdout + back.stderr[-3000:]
    assert lifecycle.holder("production") == staged


def test_retrain_trains_only_when_a_table_changed(lifecycle: Lifecycle, staged: str) -> None:
    before = lifecycle.versions()
    unchanged = lifecycle.chaos("retrain", "--alias", "staging")
    assert unchanged.returncode == 0, unchanged.stderr[-3000:]
    assert f"the tables are unchanged since version {lifecycle.holder('staging')}" in unchanged.stdout
    assert lifecycle.versions() == before

    holder = lifecycle.holder("staging")
    engine = engine_with_indicators(lifecycle.data_url)
    with engine.begin() as conn:  # the bank revises one month's indicator
        conn.execute(text("UPDATE socio_eco SET idx_consumer_confidence = idx_consumer_confidence + 0.5 "
                          "WHERE date = (SELECT max(date) FROM socio_eco)"))
    engine.dispose()
    changed = lifecycle.chaos("retrain", "--alias", "staging")
    (new,) = lifecycle.versions() - before
    assert f"trained and registered version {new}" in changed.stdout, changed.stdout + changed.stderr[-3000:]
    result = lifecycle.tags(new)["gate.staging.result"]
    # The alias moves if and only if the gate passed, and the exit code says which.
    assert (lifecycle.holder("staging") == new) == (result == "passed")
    assert changed.returncode == (0 if result == "passed" else 1)
    assert result == "passed", changed.stdout  # the same recipe on revised data is no worse
    assert holder != new

    again = lifecycle.chaos("retrain", "--alias", "staging")
    assert again.returncode == 0 and "unchanged" in again.stdout
    assert lifecycle.versions() == before | {new}


def test_the_registry_away_stops_a_new_server_not_a_running_one(lifecycle: Lifecycle, staged: str,
                                                                customers: pd.DataFrame) -> None:
    host, port = lifecycle.registry_url.removeprefix("http://").split(":")
    proxy = TcpProxy((host, int(port)))
    proxy.start()
    through = f"http://127.0.0.1:{proxy.port}"
    pinned = f"models:/{REGISTERED_MODEL}/{staged}"
    command = [str(VENV_BIN / "chaos"), "serve", "--model", pinned, "--port"]
    log = lifecycle.workdir / "serve-pinned.log"
    rows = request_rows(customers, 5, seed=12)
    with running_server(lifecycle.env(through), lifecycle.workdir, log, lambda p: [*command, str(p)]) as url:
        proxy.stop()  # the registry is away from now on
        assert len(score(url, rows)) == 5
        assert requests.get(f"{url}/ping", timeout=10).status_code == 200

        port_of_new = free_port()
        new = subprocess.run([*command, str(port_of_new)], env=lifecycle.env(through), cwd=lifecycle.workdir,
                             capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False)
        assert new.returncode == 2
        assert (f"not serving: cannot download {pinned} from the model registry (MLFLOW_TRACKING_URI)"
                in new.stderr), new.stderr[-3000:]
        assert "this server does not start without its model" in new.stderr
        assert "Uvicorn running" not in new.stderr  # it never listened: no readiness, ever
        assert through not in new.stderr  # MLflow's own message (addresses, credentials) is not repeated
        assert len(score(url, rows)) == 5


def test_a_model_for_another_package_version_is_refused_at_start_naming_both(tmp_path: Path) -> None:
    other = tmp_path / "model"
    shutil.copytree(MODEL_DIR, other)
    requirements = other / "requirements.txt"
    requirements.write_text(re.sub(r"chaos-pyfunc\S*", "chaos-pyfunc~=0.1.0", requirements.read_text()))
    command = [str(VENV_BIN / "chaos"), "serve", "--model", str(other), "--port", str(free_port())]
    started = subprocess.run(command, env=server_env({}), cwd=tmp_path, capture_output=True, text=True,
                             timeout=COMMAND_TIMEOUT, check=False)
    assert started.returncode == 2
    assert (f"requires chaos-pyfunc~=0.1.0, but this image has chaos-pyfunc "
            f"{package_version.installed_version()}") in started.stderr, started.stderr[-3000:]
    assert "Uvicorn running" not in started.stderr


def test_the_deploy_pins_the_version_the_alias_names_now(lifecycle: Lifecycle, staged: str) -> None:
    """k8s/deploy.sh reads the alias from the real registry once and pins its number."""
    holder = lifecycle.holder("staging")
    done = subprocess.run(["bash", str(REPO / "k8s" / "deploy.sh"), "--render", "staging",
                           "registry.gitlab.com/bank-data/chaos/chaos:abc1234"],
                          env={**lifecycle.env(), "MODEL_VERSION": "", "MODEL_ALIAS": ""},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert f"model: version {holder} of {REGISTERED_MODEL}, which staging names now" in done.stderr
    (deployment,) = [d for d in yaml.safe_load_all(done.stdout) if d and d["kind"] == "Deployment"]
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CHAOS_MODEL_URI"] == f"models:/{REGISTERED_MODEL}/{holder}"
