"""Behavioural tests of a fitted model (as Made-With-ML does): what it must do, whatever its AUC.

Each check takes ``score``, a function from contacts (the request columns, plus anything else)
to appetences, and real contacts to vary; it returns None when the model behaves, or what went
wrong in words. The promotion gate runs them on every candidate, and the tests on the committed
model through the pyfunc.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

Score = Callable[[pd.DataFrame], np.ndarray]


def probabilities(score: Score, rows: pd.DataFrame) -> str | None:
    values = score(rows)
    if len(values) != len(rows) or not np.all(np.isfinite(values) & (values >= 0) & (values <= 1)):
        return "the scores are not one probability in [0, 1] per row"
    return None


def past_success_raises(score: Score, rows: pd.DataFrame) -> str | None:
    """Direction: a customer who subscribed in the last campaign is a better prospect than the
    same customer who refused."""
    earlier = rows.assign(nb_contact_last_campaign=2, nb_day_last_contact=180)
    success = score(earlier.assign(result_last_campaign="success"))
    failure = score(earlier.assign(result_last_campaign="failure"))
    share = float(np.mean(success >= failure))
    gain = float(np.mean(success - failure))
    if share < 0.9 or gain < 0.02:
        return (f"a past success does not raise the appetence: higher for {share:.0%} of the "
                f"customers, by {gain:+.3f} on average")
    return None


def post_call_ignored(score: Score, rows: pd.DataFrame) -> str | None:
    """Invariance: duration_contact is known only after the call and must change nothing."""
    if not np.array_equal(score(rows.assign(duration_contact=5)), score(rows.assign(duration_contact=3000))):
        return "duration_contact (known only after the call) changes the appetence"
    return None


def rows_scored_alone(score: Score, rows: pd.DataFrame) -> str | None:
    """Invariance: a row's appetence does not depend on the other rows of the request."""
    together = score(rows)
    alone = np.array([score(rows.iloc[[i]])[0] for i in range(min(len(rows), 20))])
    if np.max(np.abs(together[: len(alone)] - alone), initial=0.0) > 1e-9:
        return "a row's appetence depends on the other rows scored with it"
    return None


CHECKS = (probabilities, past_success_raises, post_call_ignored, rows_scored_alone)


def failures(score: Score, rows: pd.DataFrame) -> list[str]:
    """Every check that fails, in words."""
    return [problem for check in CHECKS if (problem := check(score, rows)) is not None]
