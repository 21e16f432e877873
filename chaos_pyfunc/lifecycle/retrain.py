"""`chaos retrain --alias staging`: train again only if the tables changed, and move the alias
only if the new version passes the gate.

The version the alias points at recorded the fingerprint of the tables it learned from
(fingerprint.py). The same tables now: nothing is trained. The tables a candidate was refused on
before (remembered on the registered model): nothing is trained either, until they change again
or ``--force``. Otherwise the same recipe (that version's hyperparameters) is fitted without the
newest month and judged against the version on that month (gate.py). Passed, the recipe is
fitted on every contact (the newest month included: the data drift, and a month's lag costs
about 0.014 of ROC AUC over a year, docs/model-lifecycle.md), that fit must pass the behavioural
checks too (it is what ships), then it is registered and the alias moved; refused, nothing is
registered and the refusal is remembered.

Each environment runs its own (k8s/jobs/retrain): staging's on the staging database and model,
production's on production's; neither can move the other's alias. An alias that moves changes no
pod: the pods serve the version pinned at their last deploy, and the next deploy of that
environment takes the alias's version (or a person rolls back with MODEL_VERSION).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from chaos_pyfunc.config import Settings
from chaos_pyfunc.lifecycle import dataset, fingerprint, gate, registry
from chaos_pyfunc.lifecycle.train import TrainOptions, train
from chaos_pyfunc.scoring.pipeline import Hyperparameters, fit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Retrained:
    message: str
    verdict: gate.Verdict | None  # None when nothing was trained
    version: str | None = None    # the version registered, when the candidate passed

    @property
    def ok(self) -> bool:
        return self.verdict is None or self.verdict.moved


def retrain(alias: str, settings: Settings, force: bool = False, backtest_months: int = 6) -> Retrained:
    name = settings.registered_model
    client = registry.use_tracking_store(name)
    current = registry.holder(client, name, alias)
    data = dataset.load(None, settings)  # the customers table and socio_eco, as they are now
    hyper = Hyperparameters()
    if current is not None and current.run_id is not None:
        run = client.get_run(current.run_id)
        hyper = Hyperparameters.from_params(run.data.params)
        changed = fingerprint.changes(fingerprint.from_tags(run.data.tags), data.fingerprints)
        if not changed:
            return Retrained(f"the tables are unchanged since version {current.version} ({alias}): "
                             f"nothing trained; {data.fingerprints['customers'].describe()}", None)
        log.info("the tables changed since version %s: %s", current.version, "; ".join(changed))
    key = fingerprint.key(data.fingerprints)
    remembered = registry.refusal(client, name, key)
    if remembered is not None and not force:
        return Retrained(f"a candidate trained on these very tables (key {key}) was refused on "
                         f"{remembered.get('at', '?')}: nothing trained until they change again "
                         f"(or --force); it was refused for: {'; '.join(remembered.get('failed', []))}", None)
    judge = gate.Gate(client, data, settings)
    candidate = judge.fit_candidate(hyper)
    incumbent = None if current is None else judge.fetch(str(current.version), alias)
    verdict = judge.judge(candidate, incumbent, alias)
    shipped = None
    if verdict.passed:  # what would ship, fitted on every contact, must behave too
        shipped = fit(hyper, data.features, data.labels)
        verdict.failed += judge.behaviour(shipped, " (fitted on every contact)")
    if not verdict.passed:
        registry.remember_refusal(client, name, key, {"at": datetime.now(UTC).isoformat(timespec="seconds"),
                                                      **verdict.summary()})
        return Retrained(f"{verdict.report()}\nnothing registered; the refusal is remembered for these "
                         f"tables (key {key})", verdict)
    gate_figures = {f"gate_{key}": value for key, value in verdict.figures.items()}
    result = train(TrainOptions(backtest_months=backtest_months, registered_model=name, evaluate=False,
                                metrics=gate_figures), hyper, data, shipped)
    version = str(result.version)  # registered: TrainOptions.register
    gate.record(client, name, verdict, version, data)
    return Retrained(f"trained and registered version {version} on every contact\n{verdict.report()}",
                     verdict, version)
