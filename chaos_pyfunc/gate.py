"""The promotion gate: `chaos promote N --alias staging|production` moves the alias to version N
only if N is not worse than the version the alias points at now, on the same data.

The same data is the gate's: the contacts (the customers table, or --customers) with their
indicators, as training reads them. On it, each of the two versions gets:

- the recipe's figures: the time-ordered backtest and the random holdout of its pipeline and
  hyperparameters, fitted again on that data (a run trained on that very data, by this package
  version, with the same evaluation settings, already logged them: they are reused);
- the fitted model's figures: the registered pipeline itself scoring the backtest's months.
  A version fitted on bad data (shuffled labels, a broken join) shows here, whatever its recipe.

The candidate is refused when any ROC AUC is worse by more than ``gate_max_auc_drop``, any
Brier score is worse, a behavioural test fails (behaviour.py), or its signature is not the
input contract this package serves. With no version behind the alias yet, its AUCs must reach
``gate_min_roc_auc``. Promoting to production requires the version to hold staging. Every
verdict, passed or not, is recorded as tags on the candidate version; ``--force --reason``
moves the alias anyway and records the reason.
"""

from __future__ import annotations

import json
import logging
import pickle
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.models import Model
from sklearn.metrics import brier_score_loss, roc_auc_score

from chaos_pyfunc import behaviour, evaluate, fingerprint, package_version, registry, schema
from chaos_pyfunc.config import Settings
from chaos_pyfunc.dataset import TrainingData
from chaos_pyfunc.pipeline import Hyperparameters
from chaos_pyfunc.train import TrainOptions

log = logging.getLogger(__name__)

EVALUATIONS = ("backtest", "random", "fitted")
DEFAULTS = TrainOptions()  # the random holdout's share and seed the gate evaluates with
TAG_PREFIX = "gate"
BEHAVIOUR_ROWS = 300
BRIER_TOLERANCE = 1e-9  # floating-point noise, not a margin


class GateError(RuntimeError):
    """The promotion cannot be judged at all (an unknown version, a bad alias)."""


@dataclass
class Verdict:
    version: str
    alias: str
    against: str | None  # the version the alias pointed at, if any
    candidate: dict[str, float]
    incumbent: dict[str, float] | None
    failed: list[str] = field(default_factory=list)
    forced_reason: str | None = None

    @property
    def passed(self) -> bool:
        return not self.failed

    @property
    def moved(self) -> bool:
        return self.passed or self.forced_reason is not None

    @property
    def outcome(self) -> str:
        return "passed" if self.passed else "forced" if self.forced_reason else "refused"

    def report(self) -> str:
        lines = [f"version {self.version} for {self.alias}, against "
                 f"{'version ' + self.against if self.against else 'no version yet'}:",
                 f"  {'':18} {'v' + self.version:>6}"
                 + (f"   {'v' + self.against:>6}" if self.against else "")]
        for name in sorted(self.candidate):
            theirs = "" if self.incumbent is None else f"   {self.incumbent.get(name, float('nan')):.4f}"
            lines.append(f"  {name:18} {self.candidate[name]:.4f}{theirs}")
        lines += [f"  refused: {rule}" for rule in self.failed]
        if self.forced_reason:
            lines.append(f"  forced: {self.forced_reason}")
        lines.append(f"{self.outcome}: {self.alias} "
                     f"{'now points at version ' + self.version if self.moved else 'is unchanged'}")
        return "\n".join(lines)

    def tags(self) -> dict[str, str]:
        prefix = f"{TAG_PREFIX}.{self.alias}"
        tags = {f"{prefix}.result": self.outcome, f"{prefix}.against": self.against or "none",
                f"{prefix}.failed": "; ".join(self.failed)[:4000] or "none",
                f"{prefix}.figures": json.dumps({"candidate": self.candidate, "incumbent": self.incumbent}),
                f"{prefix}.at": datetime.now(UTC).isoformat(timespec="seconds")}
        if self.forced_reason:
            tags[f"{prefix}.reason"] = self.forced_reason[:4000]
        return tags


@dataclass(frozen=True)
class Registered:
    """A registered version, downloaded: what the gate needs of it."""

    version: str
    hyper: Hyperparameters
    logged: dict[str, float]          # the metrics its training run logged
    evaluated_on: dict[str, Any]      # what they were computed on: data, package, settings
    signature: dict[str, Any] | None
    pipeline: Any | None              # None if this package cannot unpickle it


class Gate:
    def __init__(self, client: mlflow.MlflowClient, data: TrainingData, settings: Settings,
                 backtest_months: int = 6) -> None:
        self.client = client
        self.data = data
        self.settings = settings
        self.backtest_months = backtest_months
        self._recipes: dict[Hyperparameters, dict[str, float]] = {}
        window = set(evaluate.backtest_months(data.features, backtest_months))
        self._window = evaluate.contact_months(data.features).isin(window).to_numpy()

    # ---------------------------------------------------------------- a version's figures

    def fetch(self, version: str) -> Registered:
        try:
            found = self.client.get_model_version(registry.REGISTERED_MODEL, version)
        except mlflow.exceptions.MlflowException as exc:
            raise GateError(f"{registry.REGISTERED_MODEL} has no version {version}") from exc
        if found.run_id is None:
            raise GateError(f"version {version} of {registry.REGISTERED_MODEL} has no training run")
        run = self.client.get_run(found.run_id)
        with tempfile.TemporaryDirectory() as scratch:
            local = Path(mlflow.artifacts.download_artifacts(registry.version_uri(version), dst_path=scratch))
            model = Model.load(str(local))
            try:
                pipeline = pickle.loads((local / "artifacts" / "pipeline.pkl").read_bytes())  # noqa: S301
            except Exception as exc:  # an older package's classes: judged on its logged figures only
                log.warning("version %s: its pipeline does not load here (%s)", version, type(exc).__name__)
                pipeline = None
        params = run.data.params
        return Registered(
            version, Hyperparameters.from_params(params), dict(run.data.metrics),
            {"data": fingerprint.from_tags(run.data.tags), "package": run.data.tags.get("package_version"),
             "settings": (params.get("backtest_months"), params.get("test_size"), params.get("seed"))},
            None if model.signature is None else model.signature.to_dict(), pipeline)

    def figures(self, model: Registered) -> dict[str, float]:
        return {**self._recipe(model), **self._fitted(model)}

    def _recipe(self, model: Registered) -> dict[str, float]:
        names = [f"{e}_{m}" for e in ("backtest", "random") for m in ("roc_auc", "brier")]
        same = model.evaluated_on == {"data": self.data.fingerprints,
                                      "package": package_version.installed_version(),
                                      "settings": (str(self.backtest_months), str(DEFAULTS.test_size),
                                                   str(DEFAULTS.seed))}
        if same and all(n in model.logged for n in names):
            return {n: model.logged[n] for n in names}
        if model.hyper not in self._recipes:
            log.info("evaluating the recipe of version %s on the gate's data", model.version)
            evaluation = evaluate.evaluate_recipe(self.data.features, self.data.labels, model.hyper,
                                                  self.backtest_months, DEFAULTS.test_size, DEFAULTS.seed)
            self._recipes[model.hyper] = {n: evaluation.metrics[n] for n in names}
        return self._recipes[model.hyper]

    def _fitted(self, model: Registered) -> dict[str, float]:
        if model.pipeline is None:
            return {}
        rows, labels = self.data.features[self._window], self.data.labels[self._window]
        scores = model.pipeline.predict_proba(rows)[:, 1]
        return {"fitted_roc_auc": float(roc_auc_score(labels, scores)),
                "fitted_brier": float(brier_score_loss(labels, scores))}

    # ---------------------------------------------------------------- the rules

    def judge(self, candidate: Registered, incumbent: Registered | None, alias: str) -> Verdict:
        mine = self.figures(candidate)
        theirs = None if incumbent is None else self.figures(incumbent)
        verdict = Verdict(candidate.version, alias, None if incumbent is None else incumbent.version,
                          mine, theirs)
        if candidate.signature != schema.signature().to_dict():
            verdict.failed.append("signature: the version's input or output signature is not the "
                                  "contract this package serves (chaos_pyfunc/schema.py)")
        if candidate.pipeline is None:
            verdict.failed.append("behaviour: its pipeline does not load with "
                                  f"{package_version.PACKAGE} {package_version.installed_version()}")
        else:
            sample = self.data.features.sample(n=min(BEHAVIOUR_ROWS, len(self.data.features)), random_state=0)
            verdict.failed += [f"behaviour: {problem}"
                               for problem in behaviour.failures(score_rows(candidate.pipeline), sample)]
        if theirs is None or incumbent is None:
            floor = self.settings.gate_min_roc_auc
            verdict.failed += [f"roc_auc: {name} {mine[name]:.4f} is below the floor {floor:.3f} "
                               "(gate_min_roc_auc)" for name in mine if name.endswith("roc_auc")
                               and mine[name] < floor]
            return verdict
        margin = self.settings.gate_max_auc_drop
        for name in (f"{e}_{m}" for e in EVALUATIONS for m in ("roc_auc", "brier")):
            if name not in mine or name not in theirs:
                continue
            ours, its = mine[name], theirs[name]
            if name.endswith("roc_auc") and ours < its - margin:
                verdict.failed.append(f"roc_auc: {name} {ours:.4f} against {its:.4f} for version "
                                      f"{incumbent.version}, worse by {its - ours:.4f} "
                                      f"(allowed: {margin:.3f})")
            if name.endswith("brier") and ours > its + BRIER_TOLERANCE:
                verdict.failed.append(f"brier: {name} {ours:.4f} against {its:.4f} for version "
                                      f"{incumbent.version}: worse")
        return verdict


def promote(client: mlflow.MlflowClient, data: TrainingData, settings: Settings, version: str,
            alias: str, force_reason: str | None = None, backtest_months: int = 6) -> Verdict:
    """Judge ``version`` against the holder of ``alias``; move the alias if it passes or is
    forced; record the verdict on the version either way."""
    if alias not in registry.ALIASES:
        raise GateError(f"alias must be one of {', '.join(registry.ALIASES)}, not {alias!r}")
    gate = Gate(client, data, settings, backtest_months)
    candidate = gate.fetch(version)
    current = registry.holder(client, alias)
    same = current is None or str(current.version) == version
    incumbent = None if current is None or same else gate.fetch(str(current.version))
    verdict = gate.judge(candidate, incumbent, alias)
    if alias == "production" and "staging" not in registry.aliases_of(client, version):
        staging = registry.holder(client, "staging")
        verdict.failed.append(f"staging_first: version {version} does not hold staging "
                              f"({'version ' + str(staging.version) if staging else 'no version'} does)")
    verdict.forced_reason = force_reason if verdict.failed else None
    for key, value in verdict.tags().items():
        client.set_model_version_tag(registry.REGISTERED_MODEL, version, key, value)
    if verdict.moved:
        client.set_registered_model_alias(registry.REGISTERED_MODEL, alias, version)
    log.info("gate %s for version %s to %s", verdict.outcome, version, alias)
    return verdict


def score_rows(pipeline: Any) -> behaviour.Score:
    """The fitted pipeline as a behaviour.Score on joined contacts."""
    return lambda rows: np.asarray(pipeline.predict_proba(rows)[:, 1], dtype=np.float64)
