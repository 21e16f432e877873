"""The model's life cycle against real processes: a real `mlflow server` on loopback with its
backend store in PostgreSQL, the `chaos` commands a data scientist and the CronJobs type, and
`chaos serve` loading what the registry says.

The bank's table starts with the contacts up to 2010-09; the newest months arrive during the
module, as they would in production. Two environments share the one registry, each with its own
registered model: staging's and production's.

train → promote (the gate, out of time) → serve the alias; retrain on the months appended, judged
on the newest one, which neither version saw; tables rewritten under a version refused and the
refusal remembered; each environment touches only its own alias; a staging version copied to
production with its lineage; no customer row anywhere in the registry; the registry away.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

from chaos_pyfunc.contract import schema
from chaos_pyfunc.db import load_csv
from chaos_pyfunc.lifecycle.registry import version_uri
from chaos_pyfunc.scoring import package_version

from .conftest import running_server, score, server_env

pytestmark = [pytest.mark.e2e, pytest.mark.data, pytest.mark.training]

# A small recipe: the life cycle is under test here, not the model's quality (test_model.py).
QUICK = ("--max-iter", "60", "--learning-rate", "0.1")
COMMAND_TIMEOUT = 600
STAGING, PRODUCTION = "chaos-appetence-staging", "chaos-appetence-production"
FIRST_CUT = "2010-09-30"  # the table holds the contacts up to here at first


@dataclass
class Lifecycle:
    registry_url: str
    data_url: str  # customers and socio_eco, as the bank's database holds them
    workdir: Path

    def env(self, registry_url: str | None = None, model: str = STAGING) -> dict[str, str]:
        return server_env({"MLFLOW_TRACKING_URI": registry_url or self.registry_url,
                           "CHAOS_DATABASE_URL": self.data_url, "CHAOS_REGISTERED_MODEL": model,
                           **CLIENT_ENV})

    def chaos(self, *args: str, model: str = STAGING, registry_url: str | None = None
              ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(VENV_BIN / "chaos"), *args], env=self.env(registry_url, model),
                              cwd=self.workdir, capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                              check=False)

    def train(self, *args: str, model: str = STAGING) -> str:
        """`chaos train` with the quick recipe; the registered version's number."""
        done = self.chaos("train", *QUICK, *args, model=model)
        assert done.returncode == 0, done.stderr[-3000:]
        version = json.loads(done.stdout[done.stdout.index("{"):])["version"]
        assert version is not None
        return str(version)

    def client(self) -> mlflow.MlflowClient:
        return mlflow.MlflowClient(tracking_uri=self.registry_url, registry_uri=self.registry_url)

    def holder(self, alias: str, model: str = STAGING) -> str | None:
        try:
            return str(self.client().get_model_version_by_alias(model, alias).version)
        except mlflow.exceptions.MlflowException:
            return None

    def versions(self, model: str = STAGING) -> set[str]:
        return {str(v.version) for v in self.client().search_model_versions(f"name='{model}'")}

    def tags(self, version: str, model: str = STAGING) -> dict[str, str]:
        return dict(self.client().get_model_version(model, version).tags)

    def load_customers(self, until: str | None = None, change: Any = None) -> None:
        """The customers table: the shared contacts up to ``until`` (all), changed by ``change``."""
        frame = pd.read_csv(CUSTOMERS_CSV)
        if until is not None:
            frame = frame[frame["date"] <= until]
        if change is not None:
            frame = change(frame)
        path = self.workdir / "customers-now.csv"
        frame.to_csv(path, index=False)
        engine = engine_with_indicators(self.data_url)
        load_csv(engine, "customers", path)
        engine.dispose()

    def sql(self, statement: str) -> None:
        engine = engine_with_indicators(self.data_url)
        with engine.begin() as conn:
            conn.execute(text(statement))
        engine.dispose()


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lifecycle]:
    workdir = tmp_path_factory.mktemp("lifecycle")
    with (throwaway_pg_database() as backend, throwaway_pg_database(with_indicators=True) as data,
          mlflow_registry(backend, workdir) as registry):
        cycle = Lifecycle(registry.url, data, workdir)
        cycle.load_customers(until=FIRST_CUT)
        yield cycle


@pytest.fixture(scope="module")
def staged(lifecycle: Lifecycle) -> str:
    """The first version: trained on the table (up to 2010-09) and promoted to staging."""
    version = lifecycle.train()
    promoted = lifecycle.chaos("promote", version, "--alias", "staging")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr[-3000:]
    return version


@pytest.fixture(scope="module")
def shuffled(lifecycle: Lifecycle, staged: str) -> str:
    """A version fitted on the same contacts with their outcomes shuffled: learns nothing real."""
    frame = pd.read_csv(CUSTOMERS_CSV)
    frame = frame[frame["date"] <= FIRST_CUT].copy()
    frame["subscription"] = frame["subscription"].sample(frac=1.0, random_state=0).to_numpy()
    path = lifecycle.workdir / "shuffled.csv"
    frame.to_csv(path, index=False)
    return lifecycle.train("--customers", str(path))


def figures(tags: dict[str, str], alias: str = "staging") -> dict[str, float]:
    return dict(json.loads(tags[f"gate.{alias}.figures"]))


def test_train_registers_and_the_gate_passes_the_first_version_to_staging(lifecycle: Lifecycle,
                                                                         staged: str) -> None:
    assert lifecycle.holder("staging") == staged
    tags = lifecycle.tags(staged)
    assert tags["gate.staging.result"] == "passed"
    assert tags["gate.staging.against"] == "none"
    found = figures(tags)
    assert found["candidate_roc_auc"] > 0.6 and found["holdout_rows"] > 50  # 2010-09's contacts
    run = lifecycle.client().get_run(lifecycle.client().get_model_version(STAGING, staged).run_id)
    up_to_september = int((pd.read_csv(CUSTOMERS_CSV)["date"] <= FIRST_CUT).sum())
    assert run.data.tags["data.customers.rows"] == str(up_to_september)
    assert run.data.tags["data.customers.latest"] <= FIRST_CUT
    assert run.data.tags["data.customers.months"].startswith("2008-05:")
    assert run.data.tags["package_version"] == package_version.installed_version()
    assert lifecycle.client().get_experiment(run.info.experiment_id).name == STAGING  # its own runs


def test_the_server_serves_the_alias_and_says_which_version(lifecycle: Lifecycle, staged: str,
                                                           customers: pd.DataFrame) -> None:
    uri = f"models:/{STAGING}@staging"
    log = lifecycle.workdir / "serve-staging.log"
    started = time.monotonic()
    command = [str(VENV_BIN / "chaos"), "serve", "--model", uri, "--port"]
    with running_server(lifecycle.env(), lifecycle.workdir, log, lambda port: [*command, str(port)]) as url:
        print(f"cold start with a registry download: {time.monotonic() - started:.1f} s to /ping")
        described = requests.get(f"{url}/model", timeout=10)
        assert described.json() == {"uri": uri, "name": STAGING, "version": staged,
                                    "package_version": package_version.installed_version()}
        assert requests.get(f"{url}/ping", timeout=10).headers["x-model-version"] == staged
        scores = score(url, request_rows(customers, 20, seed=11))
        assert len(scores) == 20 and all(0 <= s <= 1 for s in scores)
    assert (f"serving {STAGING} version {staged} ({uri}), chaos-pyfunc "
            f"{package_version.installed_version()}") in exited_log(log)


def test_the_data_scientists_path_loads_a_version_and_scores_read_csv(
        lifecycle: Lifecycle, staged: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in lifecycle.env().items():
        if key.startswith(("MLFLOW_", "CHAOS_")):
            monkeypatch.setenv(key, value)
    try:
        model = mlflow.pyfunc.load_model(f"models:/{STAGING}/{staged}")
        scores = model.predict(pd.read_csv(CUSTOMERS_CSV))["appetence"]
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    assert len(scores) == 38429 and scores.between(0, 1).all()


def test_drift_compares_with_the_contacts_the_version_learned_from_reread_from_the_table(
        lifecycle: Lifecycle, staged: str, customers: pd.DataFrame, tmp_path: Path) -> None:
    """The version served logs what it scores; `chaos drift` rereads the contacts that version
    learned from in the environment's customers table (the registry holds none), and scores them
    with that version's pipeline. The report is kept in the registry, beside the version."""
    with throwaway_pg_database() as log_db:
        env = {**lifecycle.env(), "CHAOS_PREDICTION_LOG": "true", "CHAOS_PREDICTION_LOG_URL": log_db}
        command = [str(VENV_BIN / "chaos"), "serve", "--model", version_uri(STAGING, staged), "--port"]
        with running_server(env, tmp_path, tmp_path / "serve.log", lambda port: [*command, str(port)]) as url:
            rows = request_rows(customers, 1500, seed=12)
            assert len(score(url, rows.iloc[:700])) + len(score(url, rows.iloc[700:])) == 1500
        # The server has exited: what it logged is written.
        done = subprocess.run([str(VENV_BIN / "chaos"), "drift", "--since", "1d", "--output", str(tmp_path)],
                              env=env, cwd=tmp_path, capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                              check=False)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    summary = json.loads((tmp_path / "drift.json").read_text())
    assert summary["model_version"] == staged and summary["rows"] == 1500
    assert summary["reference"].startswith(f"the contacts version {staged} learned from (2008-05-")
    assert summary["reference_rows"] == int((customers["date"] <= FIRST_CUT).sum()) and not summary["alarm"]
    assert "appetence" in {f["feature"] for f in summary["features"]}  # scored by the version's pipeline
    run_id = lifecycle.tags(staged)["drift.run_id"]
    assert f"kept in the registry: run {run_id}" in done.stdout
    client = lifecycle.client()
    run = client.get_run(run_id)
    trained = client.get_run(client.get_model_version(STAGING, staged).run_id)
    assert run.info.experiment_id == trained.info.experiment_id
    assert (run.data.tags["chaos.report"], run.data.tags["chaos.model_version"]) == ("drift", staged)
    kept_files = {a.path for a in client.list_artifacts(run_id, "drift")}
    assert kept_files == {"drift/drift.html", "drift/drift.json"}
    (tmp_path / "kept").mkdir()
    kept = Path(client.download_artifacts(run_id, "drift/drift.json", str(tmp_path / "kept")))
    assert json.loads(kept.read_text()) == summary


def test_a_model_fitted_on_shuffled_labels_is_refused_with_the_rule(lifecycle: Lifecycle, staged: str,
                                                                    shuffled: str) -> None:
    refused = lifecycle.chaos("promote", shuffled, "--alias", "staging")
    assert refused.returncode == 1, refused.stdout + refused.stderr[-3000:]
    # It learned other labels than the table's for the holdout month: judged as fitted, out of time.
    assert f"version {shuffled}: as fitted" in refused.stdout
    assert re.search(rf"refused: roc_auc: 0\.\d+ against 0\.\d+ for version {staged} on the same \d+ "
                     "contacts", refused.stdout), refused.stdout
    assert "staging is unchanged" in refused.stdout
    assert lifecycle.holder("staging") == staged
    tags = lifecycle.tags(shuffled)
    assert tags["gate.staging.result"] == "refused"
    assert tags["gate.staging.against"] == staged


def test_force_needs_a_reason_and_records_it(lifecycle: Lifecycle, staged: str, shuffled: str) -> None:
    no_reason = lifecycle.chaos("promote", shuffled, "--alias", "staging", "--force")
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    forced = lifecycle.chaos("promote", shuffled, "--alias", "staging", "--force",
                             "--reason", "incident 42: rollback drill")
    assert forced.returncode == 0, forced.stdout + forced.stderr[-3000:]
    assert lifecycle.holder("staging") == shuffled
    tags = lifecycle.tags(shuffled)
    assert tags["gate.staging.result"] == "forced"
    assert tags["gate.staging.reason"] == "incident 42: rollback drill"
    # Back to the first version: a rollback is one promote.
    back = lifecycle.chaos("promote", staged, "--alias", "staging")
    assert back.returncode == 0, back.stdout + back.stderr[-3000:]
    assert lifecycle.holder("staging") == staged


def test_a_staging_version_goes_to_production_by_one_copy_with_its_lineage(lifecycle: Lifecycle,
                                                                          staged: str) -> None:
    copied = lifecycle.chaos("promote", staged, "--alias", "production", "--from", STAGING, model=PRODUCTION)
    assert copied.returncode == 0, copied.stdout + copied.stderr[-3000:]
    production = lifecycle.holder("production", PRODUCTION)
    assert production is not None
    assert f"copied version {staged} of {STAGING} as version {production} of {PRODUCTION}" in copied.stdout
    client = lifecycle.client()
    source, copy = client.get_model_version(STAGING, staged), client.get_model_version(PRODUCTION, production)
    assert copy.run_id == source.run_id  # the same training run: the lineage
    assert lifecycle.tags(production, PRODUCTION)["copied_from"] == f"{STAGING}/{staged}"
    assert lifecycle.holder("production") is None  # staging's model has no production alias


def test_retrain_judges_on_the_newest_month_neither_version_saw(lifecycle: Lifecycle, staged: str) -> None:
    """The months after September arrive. The candidate is fitted without the newest (2010-11) and
    the version of September scores it as it was fitted: different models, different figures."""
    unchanged = lifecycle.chaos("retrain", "--alias", "staging")
    assert unchanged.returncode == 0, unchanged.stderr[-3000:]
    assert f"the tables are unchanged since version {staged}" in unchanged.stdout
    before = lifecycle.versions()
    lifecycle.load_customers()  # October and November appended
    changed = lifecycle.chaos("retrain", "--alias", "staging")
    print(changed.stdout)
    assert "holdout: the contacts of 2010-11" in changed.stdout
    assert f"version {staged}: as fitted" in changed.stdout and "the candidate: as fitted" in changed.stdout
    new = lifecycle.versions() - before
    if changed.returncode == 0:  # passed: registered on every contact, the alias moved
        (version,) = new
        found = figures(lifecycle.tags(version))
        assert lifecycle.holder("staging") == version
    else:  # a refusal is an answer too, with its figures; nothing registered
        assert changed.returncode == 1 and not new, changed.stdout + changed.stderr[-3000:]
        found = {k: float(v) for k, v in re.findall(r"(\w+_(?:roc_auc|brier))\s+(-?[\d.]+)", changed.stdout)}
    assert found["candidate_roc_auc"] != found["incumbent_roc_auc"]  # not the same figures twice
    assert found["candidate_brier"] != found["incumbent_brier"]
    assert found["roc_auc_difference_low"] < found["roc_auc_difference"] < found["roc_auc_difference_high"]


def shift_socio_eco_by_a_month(lifecycle: Lifecycle) -> None:
    """Each month gets the next month's indicators: a join off by one, upstream."""
    lifecycle.sql("UPDATE socio_eco AS s SET euribor_3m = n.euribor_3m, nb_employee = n.nb_employee, "
                  "idx_consumer_price = n.idx_consumer_price, idx_consumer_confidence = "
                  "n.idx_consumer_confidence, employment_variation_rate = n.employment_variation_rate "
                  "FROM socio_eco AS n WHERE n.date = (SELECT min(date) FROM socio_eco WHERE date > s.date)")


def flip_newest_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """A fifth of the outcomes of the newest three months flipped."""
    newest = frame["date"] >= "2010-09-01"
    flipped = frame[newest].sample(frac=0.2, random_state=3).index
    frame.loc[flipped, "subscription"] = frame.loc[flipped, "subscription"].map({"yes": "no", "no": "yes"})
    return frame


@pytest.mark.parametrize("break_tables", ["socio_eco shifted", "labels flipped"])
def test_a_subtly_broken_table_is_refused_and_the_refusal_remembered(lifecycle: Lifecycle, staged: str,
                                                                     break_tables: str) -> None:
    holder, before = lifecycle.holder("staging"), lifecycle.versions()
    if break_tables == "socio_eco shifted":
        shift_socio_eco_by_a_month(lifecycle)
    else:
        lifecycle.load_customers(change=flip_newest_labels)
    try:
        refused = lifecycle.chaos("retrain", "--alias", "staging")
        assert refused.returncode == 1, refused.stdout + refused.stderr[-3000:]
        table = "socio_eco" if break_tables == "socio_eco shifted" else "customers"
        assert re.search(rf"refused: history: {table} of .* differ from what the tables held when version "
                         rf"{holder} was let in", refused.stdout), refused.stdout
        assert "nothing registered; the refusal is remembered" in refused.stdout
        assert lifecycle.versions() == before and lifecycle.holder("staging") == holder
        again = lifecycle.chaos("retrain", "--alias", "staging")  # the next night: not trained again
        assert again.returncode == 0 and "nothing trained until they change again" in again.stdout
        forced = lifecycle.chaos("retrain", "--alias", "staging", "--force")
        assert forced.returncode == 1 and "refused: history" in forced.stdout  # trained, judged again
    finally:
        engine_with_indicators(lifecycle.data_url).dispose()  # the indicators as they were
        lifecycle.load_customers()


def test_staging_s_and_production_s_retrains_touch_only_their_own_alias(lifecycle: Lifecycle,
                                                                       staged: str) -> None:
    """One registry, two environments: production's nightly job trains and moves production's
    alias in production's model; staging's alias stays where it was, and the other way round."""
    staging_before = lifecycle.holder("staging")
    production_before = lifecycle.holder("production", PRODUCTION)
    done = lifecycle.chaos("retrain", "--alias", "production", model=PRODUCTION)
    assert done.returncode in (0, 1), done.stdout + done.stderr[-3000:]
    assert lifecycle.holder("staging") == staging_before
    assert lifecycle.holder("production") is None
    if done.returncode == 0 and "trained and registered" in done.stdout:
        assert lifecycle.holder("production", PRODUCTION) != production_before
    production_now = lifecycle.holder("production", PRODUCTION)
    lifecycle.sql("UPDATE socio_eco SET idx_consumer_confidence = idx_consumer_confidence + 0.5 "
                  "WHERE date = (SELECT max(date) FROM socio_eco)")  # the bank revises a month: both run
    try:
        staging_again = lifecycle.chaos("retrain", "--alias", "staging", "--force")
        assert staging_again.returncode in (0, 1), staging_again.stdout + staging_again.stderr[-3000:]
    finally:
        engine_with_indicators(lifecycle.data_url).dispose()  # the indicators as they were
    assert lifecycle.holder("production", PRODUCTION) == production_now  # untouched by staging's job
    assert lifecycle.holder("staging", PRODUCTION) is None


def rows_in(path: Path) -> list[tuple[str, ...]]:
    """The rows of input columns a file holds, if it holds any: JSON examples, CSV."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        document = None
    frames = []
    if isinstance(document, dict):
        for part in (document, *(v for v in document.values() if isinstance(v, dict))):
            if {"columns", "data"} <= set(part):
                frames.append(pd.DataFrame(part["data"], columns=part["columns"]))
    elif path.name.endswith((".csv", ".csv.gz")):
        frames.append(pd.read_csv(path))
    return [tuple(str(v) for v in row) for frame in frames if set(schema.INPUT_COLUMNS) <= set(frame)
            for row in frame[list(schema.INPUT_COLUMNS)].itertuples(index=False)]


def test_no_run_in_the_registry_holds_a_customer_row(lifecycle: Lifecycle, staged: str,
                                                    tmp_path: Path) -> None:
    """Every environment reads the registry: every artifact of every run is listed and opened."""
    customers = {tuple(str(v) for v in row)
                 for row in pd.read_csv(CUSTOMERS_CSV)[list(schema.INPUT_COLUMNS)].itertuples(index=False)}
    client = lifecycle.client()
    experiments = client.search_experiments()
    runs = client.search_runs([e.experiment_id for e in experiments], max_results=1000)
    files: list[Path] = []

    def walk(run_id: str, path: str | None) -> None:
        for artifact in client.list_artifacts(run_id, path):
            if artifact.is_dir:
                walk(run_id, artifact.path)
            else:
                files.append(Path(client.download_artifacts(run_id, artifact.path, str(tmp_path))))

    for run in runs:
        walk(run.info.run_id, None)
    mlflow.set_tracking_uri(lifecycle.registry_url)  # the proxied artifacts are read through it
    try:
        for model in client.search_logged_models([e.experiment_id for e in experiments]):
            folder = mlflow.artifacts.download_artifacts(artifact_uri=model.artifact_location,
                                                         dst_path=str(tmp_path / model.model_id))
            files += [path for path in Path(folder).rglob("*") if path.is_file()]
    finally:
        mlflow.set_tracking_uri(None)
    assert runs and any(f.name == "input_example.json" for f in files)
    examples = [row for f in files for row in rows_in(f)]
    assert examples, "the input examples were read"
    assert not [row for row in examples if row in customers]
    assert not [f for f in files if "contacts" in f.name or f.suffix == ".gz"]


def test_the_registry_away_stops_a_new_server_not_a_running_one(lifecycle: Lifecycle, staged: str,
                                                                customers: pd.DataFrame) -> None:
    host, port = lifecycle.registry_url.removeprefix("http://").split(":")
    proxy = TcpProxy((host, int(port)))
    proxy.start()
    through = f"http://127.0.0.1:{proxy.port}"
    pinned = f"models:/{STAGING}/{staged}"
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


def test_the_deploy_pins_the_version_the_environment_s_alias_names_now(lifecycle: Lifecycle,
                                                                       staged: str) -> None:
    """k8s/deploy.sh reads staging's alias in staging's model from the real registry, once, and
    pins its number."""
    holder = lifecycle.holder("staging")
    image = "registry.gitlab.com/bank-data/chaos/chaos"
    done = subprocess.run(["bash", str(REPO / "k8s" / "deploy.sh"), "--render", "staging", f"{image}:abc1234",
                           f"{image}/jobs:abc1234"],
                          env={**lifecycle.env(), "MODEL_VERSION": ""},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert f"model: version {holder} of {STAGING}, which staging names now" in done.stderr
    (deployment,) = [d for d in yaml.safe_load_all(done.stdout) if d and d["kind"] == "Deployment"]
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CHAOS_MODEL_URI"] == f"models:/{STAGING}/{holder}"
