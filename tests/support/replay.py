"""`make replay`: a year of production lived in one run, month by month, as production lives it.

A fresh PostgreSQL database (the bank's: socio_eco, customers with their contact ids and
outcomes, the prediction log), a real `mlflow server` (its store and artifacts under
``var/replay/``, kept when the run ends), and `chaos serve` with the prediction log on. The run
starts from a version trained on every contact before the first month replayed. Then, for each
month M of the last ``months`` of the shared data:

- the nightly jobs, as the CronJobs run them (the `chaos` commands): the finished month's
  contacts and outcomes are in the customers table; `chaos retrain --alias production` (the gate
  judges the candidate on the newest month), `chaos drift` on the rows served since the last
  deploy, `chaos monitor` on every row served with a known outcome;
- the deploy: the server restarted, pinned to the version the alias names;
- month M's contacts scored through the HTTP API, with their contact ids; the live ROC AUC and
  Brier score of what was answered, against what the contacts did.

Alongside, in this process, what the served loop is compared with: the starting version never
retrained (frozen), each month's candidate shipped as fitted (without the newest month), and
the gate's rule on pairs of equally good models (the same recipe, another seed): every refusal
there is a false refusal.

Writes bench/replay.json (``--out``) and a PNG of the months (``--plot``), which `make docs`
renders into docs/model-lifecycle.md. tests/e2e/test_replay.py lives 3 months of it with a quick
recipe.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import requests
from sklearn.metrics import brier_score_loss, roc_auc_score
from sqlalchemy import create_engine, text

from chaos_pyfunc.config import Settings
from chaos_pyfunc.contract import schema
from chaos_pyfunc.db import load_csv, make_engine
from chaos_pyfunc.lifecycle import dataset, gate
from chaos_pyfunc.lifecycle.dataset import TrainingData
from chaos_pyfunc.scoring.pipeline import Hyperparameters, fit
from chaos_pyfunc.scoring.socio_eco import IndicatorSource

from .database import fresh_database
from .registry import CLIENT_ENV, server_command
from .server import REPO, VENV_BIN, Served, launch

ADMIN_URL = os.environ.get("CHAOS_BENCH_PG_URL", "postgresql+psycopg2://root@127.0.0.1:5432/postgres")
DATA = Path(os.environ.get("CHAOS_DATA_DIR", REPO.parent / "shared" / "data"))
MODEL = "chaos-appetence-production"  # the replay lives production
ALIAS = "production"
QUICK = ("--max-iter", "60", "--learning-rate", "0.1")  # the test's recipe: the loop, not the model
BATCH_ROWS = 50
COMMAND_SECONDS = 1800


@dataclass
class World:
    root: Path          # var/replay (or the test's)
    database_url: str
    registry_url: str
    contacts: pd.DataFrame  # every labelled contact, with its contact id and month

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CHAOS_", "MLFLOW_"))}
        env |= {"PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", "PYTHONUNBUFFERED": "1",
                "CHAOS_DATABASE_URL": self.database_url, "MLFLOW_TRACKING_URI": self.registry_url,
                "CHAOS_REGISTERED_MODEL": MODEL, "CHAOS_DRIFT_MIN_ROWS": "100", **CLIENT_ENV, **extra}
        return env

    def chaos(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(VENV_BIN / "chaos"), *args], env=self.env(), cwd=self.root,
                              capture_output=True, text=True, timeout=COMMAND_SECONDS, check=False)
        if check and done.returncode not in (0, 1):
            raise RuntimeError(f"chaos {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}")
        return done

    def load_until(self, month: pd.Period) -> None:
        """The customers table: every contact of the months before ``month``, with its outcome."""
        known = self.contacts[self.contacts["month"] < month].drop(columns="month")
        path = self.root / "customers-now.csv"
        known.to_csv(path, index=False)
        engine = make_engine(Settings(database_url=self.database_url))
        load_csv(engine, "customers", path)
        engine.dispose()

    def holder(self) -> str:
        client = mlflow.MlflowClient(self.registry_url, self.registry_url)
        return str(client.get_model_version_by_alias(MODEL, ALIAS).version)

    def export(self, version: str) -> str:
        """The version's model folder under the root, for mlflow.pyfunc.load_model; its path
        relative to the repository (or absolute, outside it)."""
        folder = self.root / "versions" / version / "model"
        if not folder.exists():
            self.chaos("export", f"models:/{MODEL}/{version}", "--to", str(folder))
        return _relative(folder)


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path.resolve())


def read_contacts() -> pd.DataFrame:
    """The shared contacts, each with a contact id of the bank's (its line) and its month."""
    frame = pd.read_csv(DATA / "customers.csv")
    frame[schema.CONTACT_ID] = [f"c{i:05d}" for i in range(len(frame))]
    frame["month"] = pd.to_datetime(frame["date"]).dt.to_period("M")
    return frame


@contextmanager
def served(world: World, version: str) -> Iterator[Served]:
    """`chaos serve` pinned to ``version``, the prediction log on, as a pod after a deploy."""
    uri = f"models:/{MODEL}/{version}"
    log = world.root / "logs" / f"serve-{version}-{time.time():.0f}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with launch(lambda port: [str(VENV_BIN / "chaos"), "serve", "--model", uri, "--port", str(port)],
                world.env(CHAOS_PREDICTION_LOG="true"), world.root, log, 180) as server:
        yield server


def score_month(server: Served, rows: pd.DataFrame) -> np.ndarray:
    """The month's contacts through POST /invocations, in batches, with their contact ids."""
    columns = [*schema.INPUT_COLUMNS, schema.CONTACT_ID]
    answers = []
    with requests.Session() as session:
        for start in range(0, len(rows), BATCH_ROWS):
            batch = rows.iloc[start:start + BATCH_ROWS][columns]
            body = {"dataframe_split": json.loads(batch.to_json(orient="split", index=False))}
            answer = session.post(f"{server.url}/invocations", json=body, timeout=60)
            answer.raise_for_status()
            answers += [p[schema.OUTPUT_COLUMN] for p in answer.json()["predictions"]]
    return np.array(answers)


def logged_rows(world: World, ids: list[str]) -> int:
    engine = create_engine(world.database_url)
    with engine.connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM prediction_rows WHERE contact_id = ANY(:ids)"),
                             {"ids": ids}).scalar_one()
    engine.dispose()
    return int(count)


def figures(labels: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    return {"rows": len(labels), "roc_auc": round(float(roc_auc_score(labels, scores)), 4),
            "brier": round(float(brier_score_loss(labels, scores)), 4)}


def side_by_side(world: World, month: pd.Period, hyper: Hyperparameters,
                 settings: Settings) -> dict[str, Any]:
    """What month ``month`` would have got from the candidate shipped as fitted (without the
    newest month before it), and the gate's rule on two equally good models (seeds 0 and 1)
    judged on that newest month: a refusal there is a false refusal."""
    here = settings.replaced(database_url=world.database_url)
    data: TrainingData = dataset.load(None, here)
    months = data.features[schema.DATE].dt.to_period("M")
    before, holdout = (months < months.max()).to_numpy(), (months == months.max()).to_numpy()
    fits = [fit(replace(hyper, random_state=seed), data.features[before], data.labels[before])
            for seed in (0, 1)]
    this = world.contacts[world.contacts["month"] == month]
    engine = make_engine(here)
    joined = IndicatorSource(engine, ttl_seconds=0).table().join(schema.validate(this),
                                                                   settings.max_indicator_age_months)
    engine.dispose()
    as_fitted = figures((this[schema.LABEL] == "yes").to_numpy(), fits[0].predict_proba(joined)[:, 1])
    y = data.labels[holdout]
    a, b = (fit.predict_proba(data.features[holdout])[:, 1] for fit in fits)
    paired = gate.paired_differences(y, a, b)
    refused = (paired["roc_auc_difference_high"] < -settings.gate_max_auc_drop
               or paired["brier_difference_low"] > 0)
    fixed_margin = roc_auc_score(y, a) < roc_auc_score(y, b) - 0.02  # the rule this gate replaced
    return {"as_fitted": as_fitted,
            "null": {"refused": bool(refused), "fixed_margin_refused": bool(fixed_margin),
                     "roc_auc_difference": round(paired["roc_auc_difference"], 4)}}


def run(months: int, quick: bool, root: Path) -> dict[str, Any]:
    started = time.monotonic()
    shutil.rmtree(root, ignore_errors=True)
    (root / "artifacts").mkdir(parents=True)
    contacts = read_contacts()
    replayed = sorted(contacts["month"].unique())[-months:]
    database_url = fresh_database(ADMIN_URL, "chaos_replay")
    store = f"sqlite:///{(root / 'mlflow.db').resolve()}"
    registry_env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "CHAOS_"))}
    registry_env["PATH"] = f"{VENV_BIN}{os.pathsep}{registry_env.get('PATH', '')}"
    settings = Settings()
    with launch(server_command(store, root / "artifacts"), registry_env, root, root / "registry.log", 180,
                ready_path="/health") as registry:
        world = World(root, database_url, registry.url, contacts)
        world.load_until(replayed[0])
        world.chaos("train", *(QUICK if quick else ()), "--backtest-months", "1")
        first = max(int(v.version) for v in mlflow.MlflowClient(registry.url, registry.url)
                    .search_model_versions(f"name='{MODEL}'"))
        promoted = world.chaos("promote", str(first), "--alias", ALIAS)
        if promoted.returncode:
            raise RuntimeError(f"the starting version was refused:\n{promoted.stdout[-3000:]}")
        frozen_path = world.export(str(first))
        hyper = Hyperparameters(**({"max_iter": 60, "learning_rate": 0.1} if quick else {}))
        lived, since = [], None
        for index, month in enumerate(replayed):
            record: dict[str, Any] = {"month": str(month)}
            jobs = root / "jobs" / str(month)
            jobs.mkdir(parents=True)
            if index:  # the nightly jobs, once the month before has finished
                world.load_until(month)
                world.chaos("retrain", "--alias", ALIAS, "--summary", str(jobs / "gate.json"))
                record["gate"] = json.loads((jobs / "gate.json").read_text())
                minutes = max(1, int((time.monotonic() - since) / 60) + 1)
                drift = world.chaos("drift", "--since", f"{minutes}m", "--output", str(jobs / "drift"))
                summary = jobs / "drift" / "drift.json"
                record["drift"] = (_drift_figures(json.loads(summary.read_text())) if summary.exists()
                                   else {"error": drift.stderr[-500:]})
                world.chaos("monitor", "--since", "3650d", "--output", str(jobs / "monitor"))
                record |= side_by_side(world, month, hyper, settings)
            else:
                record["gate"] = {"verdict": "the starting version", "version": str(first)}
            version = world.holder()
            this = contacts[contacts["month"] == month]
            since = time.monotonic()
            with served(world, version) as server:
                scores = score_month(server, this)
            record["served"] = {"version": int(version), "model_path": world.export(version),
                                "run_id": mlflow.MlflowClient(registry.url, registry.url)
                                .get_model_version(MODEL, version).run_id}
            labels = (this[schema.LABEL] == "yes").to_numpy()
            record["live"] = figures(labels, scores)
            record["rows_scored"] = len(scores)
            record["rows_logged"] = logged_rows(world, this[schema.CONTACT_ID].tolist())
            record["_scores"] = scores
            lived.append(record)
            print(f"{month}: version {version}, live {record['live']}, gate "
                  f"{record['gate'].get('verdict')}", file=sys.stderr)
        # The last month's outcomes come in: the monitor sees every month served.
        world.load_until(replayed[-1] + 1)
        world.chaos("monitor", "--since", "3650d", "--output", str(root / "jobs" / "final-monitor"))
        final = json.loads((root / "jobs" / "final-monitor" / "monitor.json").read_text())
    by_month = {(m["model_version"], m["month"]): m for m in final["months"]}
    for record in lived:
        found = by_month.get((str(record["served"]["version"]), record["month"]), {})
        record["monitor"] = {k: found.get(k) for k in ("rows", "roc_auc", "brier", "mean_appetence",
                                                          "observed_rate", "calibration_gap")}
    frozen = _frozen(world, frozen_path, replayed, settings)
    labels = np.concatenate([(contacts[contacts["month"] == m][schema.LABEL] == "yes").to_numpy()
                             for m in replayed])
    served_scores = np.concatenate([record.pop("_scores") for record in lived])
    later = [r for r in lived if "as_fitted" in r]
    return {
        "months": lived,
        "pooled": {"served": figures(labels, served_scores),
                   "frozen": {**figures(labels, frozen), "model_path": frozen_path}},
        "as_fitted": _pooled_as_fitted(later),
        "gate": {"refused": sum(r["gate"].get("verdict") == "refused" for r in lived),
                 "null_comparisons": len(later),
                 "false_refusals": sum(r["null"]["refused"] for r in later),
                 "false_refusals_fixed_margin": sum(r["null"]["fixed_margin_refused"] for r in later)},
        "recipe": "quick" if quick else "default",
        "seconds": round(time.monotonic() - started, 1),
    }


def _drift_figures(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: summary[k] for k in ("rows", "model_version", "drifted", "drifted_share", "alarm")}


def _frozen(world: World, model_path: str, months: list[pd.Period], settings: Settings) -> np.ndarray:
    """The starting version's appetences for every month replayed, as if never retrained."""
    rows = world.contacts[world.contacts["month"].isin(months)]
    os.environ["CHAOS_DATABASE_URL"] = world.database_url
    try:
        model = mlflow.pyfunc.load_model(str(REPO / model_path) if not Path(model_path).is_absolute()
                                         else model_path)
        return model.predict(rows[list(schema.INPUT_COLUMNS)])[schema.OUTPUT_COLUMN].to_numpy()
    finally:
        os.environ.pop("CHAOS_DATABASE_URL", None)


def _pooled_as_fitted(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The months' as-fitted figures pooled by their rows (AUC: each month's, weighted)."""
    rows = sum(r["as_fitted"]["rows"] for r in records)
    if not rows:
        return {}
    return {"rows": rows, "months": len(records),
            "roc_auc_mean": round(float(np.mean([r["as_fitted"]["roc_auc"] for r in records])), 4),
            "brier": round(sum(r["as_fitted"]["brier"] * r["as_fitted"]["rows"] for r in records) / rows, 4)}


def plot(result: dict[str, Any], path: Path) -> None:
    """Live ROC AUC and Brier score per month of the version served (its number above each
    month), the frozen start's pooled figures as lines, the gate's refusals marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    months = [m["month"] for m in result["months"]]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for axis, metric in ((top, "roc_auc"), (bottom, "brier")):
        axis.plot(months, [m["live"][metric] for m in result["months"]], marker="o",
                  label="served (retrained monthly)")
        axis.axhline(result["pooled"]["frozen"][metric], color="grey", linestyle=":",
                     label="frozen start, pooled")
        axis.axhline(result["pooled"]["served"][metric], color="tab:blue", linestyle="--",
                     label="served, pooled")
        refused = [m["month"] for m in result["months"] if m["gate"].get("verdict") == "refused"]
        axis.plot(refused, [m["live"][metric] for m in result["months"] if m["month"] in refused], "rx",
                  markersize=12, label="the gate refused the candidate")
        axis.set_ylabel("ROC AUC" if metric == "roc_auc" else "Brier score")
    for m in result["months"]:
        top.annotate(f"v{m['served']['version']}", (m["month"], m["live"]["roc_auc"]),
                     textcoords="offset points", xytext=(0, 6), ha="center", fontsize="x-small")
    top.legend(fontsize="x-small", loc="lower left")
    top.set_title("A year of production, replayed: live figures of the version served each month")
    bottom.tick_params(axis="x", rotation=45)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--quick", action="store_true", help="a quick recipe (60 trees): the test's")
    parser.add_argument("--root", type=Path, default=REPO / "var" / "replay")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "replay.json")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "replay.png")
    args = parser.parse_args()
    result = run(args.months, args.quick, args.root)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.plot)
    pooled = result["pooled"]
    print(f"{len(result['months'])} months in {result['seconds']:.0f} s: served (retrained monthly) "
          f"ROC AUC {pooled['served']['roc_auc']:.3f}, Brier {pooled['served']['brier']:.3f}; frozen "
          f"ROC AUC {pooled['frozen']['roc_auc']:.3f}, Brier {pooled['frozen']['brier']:.3f}")


if __name__ == "__main__":
    main()
