"""The promotion gate, out of time: a candidate and the version it would replace are judged on the
same contacts, which neither learned from: the newest ones.

The holdout is the newest ``gate_holdout_months`` month(s) of contacts. A model is judged as
fitted when everything it learned from is older (the nightly candidate, fitted without the
holdout; a version trained before the holdout came); otherwise its recipe is fitted again on the
older months (a version trained on everything, promoted by hand), and the report says so. Both
score the holdout's contacts, and they are compared contact by contact: a paired bootstrap of
the differences (scipy.stats.bootstrap, 2000 resamples). The newest months hold about 200
contacts each: one month's ROC AUC has a standard error of about 0.035, so two figures compared
with a fixed margin refuse good candidates by chance, and the served model then goes stale. The
candidate is refused only when it is worse with 95% confidence: its ROC AUC lower by more than
``gate_max_auc_drop`` at the bound, or its Brier score higher.

Also refused, whatever the figures: tables that rewrote the months they held when the current
version was let behind the alias (each verdict records the tables' monthly fingerprints,
fingerprint.py: a month appended is the tables' life; a month rewritten is a correction or a
corruption, which no figure on the newest month tells apart: socio_eco shifted by a month,
labels flipped; a person can, with ``--force --reason``); a behavioural test failed
(behaviour.py); a signature that is not the input contract. With no current version,
the candidate's holdout AUC must not be below ``gate_min_roc_auc`` with 95% confidence.

In a nightly retrain of the same recipe on a month appended, the candidate fitted without the
newest month learned exactly what the current version learned: the comparison then shows the
current version against itself, and the report says so; the history and the behaviour are what
protect production then. The comparison has its teeth when the data behind the two differ (a
month or more the current version never saw) or the recipe does (a version promoted by hand).
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
from scipy import stats
from sklearn.metrics import brier_score_loss, roc_auc_score

from chaos_pyfunc.config import Settings
from chaos_pyfunc.contract import schema
from chaos_pyfunc.lifecycle import behaviour, evaluate, fingerprint, registry
from chaos_pyfunc.lifecycle.dataset import TrainingData
from chaos_pyfunc.scoring import package_version
from chaos_pyfunc.scoring.pipeline import Hyperparameters, fit

log = logging.getLogger(__name__)

TAG_PREFIX = "gate"
BEHAVIOUR_ROWS = 300
RESAMPLES = 2000
CONFIDENCE = 0.95  # one-sided: the bootstrap's two-sided interval at 0.90 gives each bound


class GateError(RuntimeError):
    """The promotion cannot be judged at all (an unknown version, a bad alias)."""


@dataclass(frozen=True)
class Contender:
    """A model the gate judges: a registered version, or the nightly candidate not registered yet."""

    label: str                        # "version 7", "the candidate"
    version: str | None
    hyper: Hyperparameters
    pipeline: Any | None              # None if this package cannot unpickle it
    learned: dict[str, fingerprint.TableFingerprint] | None  # the tables it learned from
    signature: dict[str, Any] | None
    # This environment's tables when the gate let it behind the alias (its verdict's tags): the
    # history a later candidate's tables must keep. A version trained elsewhere (a copy of
    # staging's, a CSV) learned other tables than these.
    accepted_on: dict[str, tuple[tuple[str, str], ...]] | None = None

    @property
    def learned_until(self) -> str:
        """The latest contact date it learned from ("" when unknown)."""
        return "" if self.learned is None else self.learned["customers"].latest


@dataclass
class Verdict:
    version: str | None  # None: the nightly candidate, registered only if it passes
    alias: str
    against: str | None  # the version the alias pointed at, if any
    figures: dict[str, float]
    notes: list[str] = field(default_factory=list)
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
        name = f"version {self.version}" if self.version else "the candidate"
        lines = [f"{name} for {self.alias}, against "
                 f"{'version ' + self.against if self.against else 'no version yet'}:"]
        lines += [f"  {key:28} {value:.4f}" for key, value in self.figures.items()]
        lines += [f"  note: {note}" for note in self.notes]
        lines += [f"  refused: {rule}" for rule in self.failed]
        if self.forced_reason:
            lines.append(f"  forced: {self.forced_reason}")
        lines.append(f"{self.outcome}: {self.alias} "
                     f"{'now points at ' + name if self.moved else 'is unchanged'}")
        return "\n".join(lines)

    def summary(self) -> dict[str, Any]:
        return {"verdict": self.outcome, "against": self.against, "figures": self.figures,
                "notes": self.notes, "failed": self.failed}

    def tags(self, tables: dict[str, fingerprint.TableFingerprint] | None = None) -> dict[str, str]:
        prefix = f"{TAG_PREFIX}.{self.alias}"
        tags = {f"{prefix}.result": self.outcome, f"{prefix}.against": self.against or "none",
                f"{prefix}.failed": "; ".join(self.failed)[:4000] or "none",
                f"{prefix}.figures": json.dumps(self.figures),
                f"{prefix}.at": datetime.now(UTC).isoformat(timespec="seconds")}
        if self.forced_reason:
            tags[f"{prefix}.reason"] = self.forced_reason[:4000]
        for table, print_ in (tables or {}).items():  # the tables it was judged on: the history kept
            tags[f"{prefix}.tables.{table}"] = fingerprint.months_text(print_)
        return tags


def _auc(labels: np.ndarray, scores: np.ndarray, axis: int = -1) -> np.ndarray:
    """ROC AUC along ``axis`` (the bootstrap's resamples at once): the Mann-Whitney statistic."""
    ranks = stats.rankdata(scores, axis=axis)
    positives = labels.sum(axis=axis)
    negatives = labels.shape[axis] - positives
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((ranks * labels).sum(axis=axis) - positives * (positives + 1) / 2) / (positives * negatives)


def paired_differences(labels: np.ndarray, candidate: np.ndarray, incumbent: np.ndarray,
                       seed: int = 0) -> dict[str, float]:
    """ROC AUC and Brier score, candidate minus incumbent, on the same contacts, with the bound
    that matters for each: the upper one for the AUC (how much better the candidate could be at
    best), the lower one for the Brier score (how much worse at least)."""
    y = labels.astype(float)

    def auc_gap(y: np.ndarray, a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        return _auc(y, a, axis) - _auc(y, b, axis)

    def brier_gap(y: np.ndarray, a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean((a - y) ** 2 - (b - y) ** 2, axis=axis)

    found = {}
    for name, statistic in (("roc_auc", auc_gap), ("brier", brier_gap)):
        result = stats.bootstrap((y, candidate, incumbent), statistic, paired=True, vectorized=True,
                                 n_resamples=RESAMPLES, confidence_level=2 * CONFIDENCE - 1,
                                 method="percentile", rng=np.random.default_rng(seed))
        found[f"{name}_difference"] = float(statistic(y, candidate, incumbent))
        found[f"{name}_difference_low"] = float(result.confidence_interval.low)
        found[f"{name}_difference_high"] = float(result.confidence_interval.high)
    return found


def auc_bound(labels: np.ndarray, scores: np.ndarray, seed: int = 0) -> float:
    """The upper bound of a one-sided 95% bootstrap interval of one model's ROC AUC."""
    result = stats.bootstrap((labels.astype(float), scores), _auc, paired=True, vectorized=True,
                             n_resamples=RESAMPLES, confidence_level=2 * CONFIDENCE - 1, method="percentile",
                             rng=np.random.default_rng(seed))
    return float(result.confidence_interval.high)


class Gate:
    def __init__(self, client: mlflow.MlflowClient, data: TrainingData, settings: Settings) -> None:
        self.client = client
        self.name = settings.registered_model
        self.data = data
        self.settings = settings
        months = evaluate.contact_months(data.features)
        self.holdout_months = evaluate.backtest_months(data.features, settings.gate_holdout_months)
        first = self.holdout_months[0]
        self.holdout = (months >= first).to_numpy()
        self.holdout_start = first.start_time.strftime("%Y-%m-%d")

    # ---------------------------------------------------------------- the contenders

    def fetch(self, version: str, alias: str | None = None) -> Contender:
        try:
            found = self.client.get_model_version(self.name, version)
        except mlflow.exceptions.MlflowException as exc:
            raise GateError(f"{self.name} has no version {version}") from exc
        if found.run_id is None:
            raise GateError(f"version {version} of {self.name} has no training run")
        run = self.client.get_run(found.run_id)
        with tempfile.TemporaryDirectory() as scratch:
            uri = registry.version_uri(self.name, version)
            local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=scratch))
            model = Model.load(str(local))
            try:
                pipeline = pickle.loads((local / "artifacts" / "pipeline.pkl").read_bytes())  # noqa: S301
            except Exception as exc:  # an older package's classes: its recipe is refitted instead
                log.warning("version %s: its pipeline does not load here (%s)", version, type(exc).__name__)
                pipeline = None
        hyper = Hyperparameters.from_params(run.data.params)
        accepted = {table: fingerprint.months_of(found.tags[key]) for table in ("customers", "socio_eco")
                    if (key := f"{TAG_PREFIX}.{alias}.tables.{table}") in found.tags}
        return Contender(f"version {version}", version, hyper, pipeline, fingerprint.from_tags(run.data.tags),
                         None if model.signature is None else model.signature.to_dict(), accepted or None)

    def fit_candidate(self, hyper: Hyperparameters) -> Contender:
        """The recipe fitted on every contact before the holdout: the nightly candidate."""
        before = ~self.holdout
        pipeline = fit(hyper, self.data.features[before], self.data.labels[before])
        return Contender("the candidate", None, hyper, pipeline, None, schema.signature().to_dict())

    def scores(self, model: Contender) -> tuple[np.ndarray, str]:
        """Its appetences for the holdout's contacts, and how they were had: as fitted when it
        never learned these very contacts (fitted before them, or on other data: another
        environment's, a CSV), its recipe fitted again without them otherwise."""
        rows = self.data.features[self.holdout]
        if model.pipeline is not None and not self._learned_holdout(model):
            return model.pipeline.predict_proba(rows)[:, 1], "as fitted"
        before = ~self.holdout
        refit = fit(model.hyper, self.data.features[before], self.data.labels[before])
        why = "it learned from the holdout" if model.learned else "what it learned from is unknown"
        return refit.predict_proba(rows)[:, 1], f"its recipe fitted again without the holdout ({why})"

    def _learned_holdout(self, model: Contender) -> bool:
        if model.version is None:  # the nightly candidate: fitted without the holdout
            return False
        if model.learned is None:
            return True  # unknown: the safe side
        months = {str(m) for m in self.holdout_months}
        theirs = {m: h for m, h in model.learned["customers"].months if m in months}
        ours = {m: h for m, h in self.data.fingerprints["customers"].months if m in months}
        return bool(theirs) and theirs == ours

    # ---------------------------------------------------------------- the rules

    def judge(self, candidate: Contender, incumbent: Contender | None, alias: str) -> Verdict:
        labels = self.data.labels[self.holdout]
        mine, how = self.scores(candidate)
        figures = {"holdout_rows": float(len(labels)),
                   "candidate_roc_auc": float(roc_auc_score(labels, mine)),
                   "candidate_brier": float(brier_score_loss(labels, mine))}
        months = ", ".join(str(m) for m in self.holdout_months)
        verdict = Verdict(candidate.version, alias, None if incumbent is None else incumbent.version, figures,
                          [f"holdout: the contacts of {months}", f"{candidate.label}: {how}"])
        if candidate.signature != schema.signature().to_dict():
            verdict.failed.append("signature: the version's input or output signature is not the "
                                  "contract this package serves (chaos_pyfunc/contract/schema.py)")
        if candidate.pipeline is None:
            verdict.failed.append("behaviour: its pipeline does not load with "
                                  f"{package_version.PACKAGE} {package_version.installed_version()}")
        else:
            verdict.failed += self.behaviour(candidate.pipeline)
        if incumbent is None:  # nothing to compare with: the floor, with the same confidence
            floor = self.settings.gate_min_roc_auc
            high = figures["candidate_roc_auc_high"] = auc_bound(labels, mine)
            if high < floor:
                verdict.failed.append(f"roc_auc: {figures['candidate_roc_auc']:.4f} on the holdout, below "
                                      f"the floor {floor:.3f} (gate_min_roc_auc) with {CONFIDENCE:.0%} "
                                      f"confidence (at most {high:.4f})")
            return verdict
        verdict.failed += self.history(incumbent)
        theirs, how = self.scores(incumbent)
        verdict.notes.append(f"{incumbent.label}: {how}")
        if np.array_equal(mine, theirs):
            verdict.notes.append(f"the candidate scores the holdout exactly as {incumbent.label}: the same "
                                 "recipe on the same months; the history and the behaviour are judged")
        figures |= {"incumbent_roc_auc": float(roc_auc_score(labels, theirs)),
                    "incumbent_brier": float(brier_score_loss(labels, theirs)),
                    **paired_differences(labels, mine, theirs)}
        margin = self.settings.gate_max_auc_drop
        if figures["roc_auc_difference_high"] < -margin:
            verdict.failed.append(
                f"roc_auc: {figures['candidate_roc_auc']:.4f} against {figures['incumbent_roc_auc']:.4f} for "
                f"{incumbent.label} on the same {len(labels)} contacts: lower by "
                f"{-figures['roc_auc_difference']:.4f}, and by more than {margin:.3f} with "
                f"{CONFIDENCE:.0%} confidence (at least {-figures['roc_auc_difference_high']:.4f})")
        if figures["brier_difference_low"] > 0:
            verdict.failed.append(
                f"brier: {figures['candidate_brier']:.4f} against {figures['incumbent_brier']:.4f} for "
                f"{incumbent.label} on the same {len(labels)} contacts: worse with {CONFIDENCE:.0%} "
                f"confidence (by at least {figures['brier_difference_low']:.4f})")
        return verdict

    def behaviour(self, pipeline: Any, what: str = "") -> list[str]:
        """The behavioural checks a fitted pipeline fails (behaviour.py), in words."""
        sample = self.data.features.sample(n=min(BEHAVIOUR_ROWS, len(self.data.features)), random_state=0)
        return [f"behaviour{what}: {problem}" for problem in behaviour.failures(score_rows(pipeline), sample)]

    def history(self, incumbent: Contender) -> list[str]:
        """The months of this environment's tables, as they were when ``incumbent`` was let
        behind the alias, that the tables now hold otherwise, in words."""
        if incumbent.accepted_on is None:
            return []
        problems = []
        for table, before in incumbent.accepted_on.items():
            changed = fingerprint.rewritten(fingerprint.TableFingerprint(0, "", "", "", before),
                                            self.data.fingerprints[table])
            if changed:
                shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
                problems.append(f"history: {table} of {shown} differ from what the tables held when "
                                f"{incumbent.label} was let in (a correction, or a corruption: a person "
                                "tells them apart, with --force --reason)")
        return problems


def promote(client: mlflow.MlflowClient, data: TrainingData, settings: Settings, version: str,
            alias: str, force_reason: str | None = None) -> Verdict:
    """Judge registered ``version`` against the holder of ``alias``; move the alias if it passes
    or is forced; record the verdict on the version either way."""
    if alias not in registry.ALIASES:
        raise GateError(f"alias must be one of {', '.join(registry.ALIASES)}, not {alias!r}")
    gate = Gate(client, data, settings)
    candidate = gate.fetch(version)
    current = registry.holder(client, gate.name, alias)
    same = current is None or str(current.version) == version
    incumbent = None if current is None or same else gate.fetch(str(current.version), alias)
    verdict = gate.judge(candidate, incumbent, alias)
    record(client, settings.registered_model, verdict, version, data, force_reason)
    return verdict


def record(client: mlflow.MlflowClient, name: str, verdict: Verdict, version: str, data: TrainingData,
           force_reason: str | None = None) -> None:
    """The verdict's tags on ``version`` (with the tables it was judged on), and the alias moved
    if it passed (or was forced)."""
    verdict.version = version
    verdict.forced_reason = force_reason if verdict.failed else None
    for key, value in verdict.tags(data.fingerprints).items():
        client.set_model_version_tag(name, version, key, value)
    if verdict.moved:
        client.set_registered_model_alias(name, verdict.alias, version)
    log.info("gate %s for version %s to %s", verdict.outcome, version, verdict.alias)


def score_rows(pipeline: Any) -> behaviour.Score:
    """The fitted pipeline as a behaviour.Score on joined contacts."""
    return lambda rows: np.asarray(pipeline.predict_proba(rows)[:, 1], dtype=np.float64)

