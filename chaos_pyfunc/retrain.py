"""`chaos retrain --alias staging`: train again only if the tables changed, and move the alias
only if the new version passes the gate.

The version the alias points at recorded the fingerprint of the tables it learned from
(fingerprint.py). The same tables now: nothing is trained. Changed: the same recipe (that
version's hyperparameters) is trained on the tables, registered, and put through the gate
against it. ``--alias production`` goes through the staging gate first, then production's.
The Kubernetes CronJob runs this every night (k8s/jobs/retrain): staging's on the
staging database, master's (``--alias production``) on the production one. An alias that moves
changes no pod: the pods serve the version pinned at their last deploy, and the next deploy of
that environment takes the alias's version (or a person rolls back with MODEL_VERSION).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from chaos_pyfunc import dataset, fingerprint, gate, registry
from chaos_pyfunc.config import Settings
from chaos_pyfunc.pipeline import Hyperparameters
from chaos_pyfunc.train import TrainOptions, train

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Retrained:
    message: str
    verdict: gate.Verdict | None  # None when nothing was trained

    @property
    def ok(self) -> bool:
        return self.verdict is None or self.verdict.moved


def retrain(alias: str, settings: Settings, backtest_months: int = 6) -> Retrained:
    client = registry.use_tracking_store()
    current = registry.holder(client, alias)
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
    result = train(TrainOptions(backtest_months=backtest_months), hyper, data)
    reports = [f"trained and registered version {result.version}"]
    # production only through staging: the gate's staging_first rule, kept by the job itself.
    for step in ("staging", "production") if alias == "production" else (alias,):
        verdict = gate.promote(client, data, settings, str(result.version), step,
                               backtest_months=backtest_months)
        reports.append(verdict.report())
        if not verdict.moved:
            break
    return Retrained("\n".join(reports), verdict)
