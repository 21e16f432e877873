"""How good a recipe is: metrics, the time-ordered backtest, the random holdout, and plots.

A recipe is the pipeline with its hyperparameters; evaluating it means fitting it again on
part of the data and scoring the rest, so the figures say how the model does on contacts it has
not seen. Training logs them; the promotion gate compares them, version against version.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no screen on servers and CI

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score, roc_curve
from sklearn.model_selection import train_test_split

from chaos_pyfunc.contract import schema
from chaos_pyfunc.scoring.pipeline import Hyperparameters, fit

Curves = dict[str, tuple[np.ndarray, np.ndarray]]  # evaluation name -> (labels, scores)


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float]  # "<evaluation>_<metric>", and the backtest month by month
    curves: Curves


def lift_top_decile(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Subscription rate among the 10% best-scored contacts, over the overall rate."""
    y_true = np.asarray(y_true, dtype=float)
    top = max(1, int(np.ceil(len(scores) * 0.1)))
    best = np.argsort(-np.asarray(scores), kind="stable")[:top]
    return float(y_true[best].mean() / y_true.mean())


def metrics(y_true: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    return {
        "roc_auc": float(roc_auc_score(y_true, scores)),
        "pr_auc": float(average_precision_score(y_true, scores)),
        "brier": float(brier_score_loss(y_true, scores)),
        "lift_top_decile": lift_top_decile(y_true, scores),
    }


def roc_figure(curves: Curves) -> Figure:
    """One ROC curve per named evaluation (name → (y_true, scores))."""
    figure, axis = plt.subplots(figsize=(5, 5))
    for name, (y_true, scores) in curves.items():
        fpr, tpr, _ = roc_curve(y_true, scores)
        axis.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y_true, scores):.3f})")
    axis.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axis.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    axis.legend(loc="lower right")
    figure.tight_layout()
    return figure


def calibration_figure(curves: Curves) -> Figure:
    """Observed subscription rate against predicted appetence, in quantile bins."""
    figure, axis = plt.subplots(figsize=(5, 5))
    for name, (y_true, scores) in curves.items():
        observed, predicted = calibration_curve(y_true, scores, n_bins=10, strategy="quantile")
        axis.plot(predicted, observed, marker="o", label=name)
    axis.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axis.set(xlabel="predicted appetence", ylabel="observed rate", title="Calibration")
    axis.legend(loc="upper left")
    figure.tight_layout()
    return figure


def contact_months(features: pd.DataFrame) -> pd.Series:
    return features[schema.DATE].dt.to_period("M")


def backtest_months(features: pd.DataFrame, months: int) -> list[pd.Period]:
    """The last ``months`` months that have contacts: the months the backtest scores."""
    return sorted(contact_months(features).unique())[-months:]


def backtest(features: pd.DataFrame, labels: np.ndarray, hyper: Hyperparameters,
             months: int) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Rolling origin: for each of the last ``months`` months, a model fitted on every earlier
    month scores that month. Returns the pooled labels and scores, and each month's figures."""
    contact = contact_months(features).to_numpy()
    pooled_y, pooled_p, by_month = [], [], {}
    for month in backtest_months(features, months):
        past, now = contact < month, contact == month
        fitted = fit(hyper, features[past], labels[past])
        y, p = labels[now], fitted.predict_proba(features[now])[:, 1]
        pooled_y.append(y)
        pooled_p.append(p)
        key = f"backtest_{month.year}_{month.month:02d}"
        by_month[f"{key}_brier"] = float(brier_score_loss(y, p))
        if len(set(y)) == 2:  # AUC needs both outcomes in the month
            by_month[f"{key}_roc_auc"] = float(roc_auc_score(y, p))
    return np.concatenate(pooled_y), np.concatenate(pooled_p), by_month


def random_holdout(features: pd.DataFrame, labels: np.ndarray, hyper: Hyperparameters,
                   test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A stratified random share of the contacts, scored by a model fitted on the rest."""
    train, test = train_test_split(np.arange(len(labels)), test_size=test_size, stratify=labels,
                                   random_state=seed)
    fitted = fit(hyper, features.iloc[train], labels[train])
    return labels[test], fitted.predict_proba(features.iloc[test])[:, 1]


def evaluate_recipe(features: pd.DataFrame, labels: np.ndarray, hyper: Hyperparameters,
                    backtest_months: int = 6, test_size: float = 0.2, seed: int = 0) -> Evaluation:
    """The backtest and the random holdout of one recipe on one data set."""
    *pooled, by_month = backtest(features, labels, hyper, backtest_months)
    curves: Curves = {"backtest": (pooled[0], pooled[1]),
                      "random": random_holdout(features, labels, hyper, test_size, seed)}
    scores = {f"{name}_{metric}": value for name, (y, p) in curves.items()
              for metric, value in metrics(y, p).items()}
    return Evaluation({**scores, **by_month}, curves)
