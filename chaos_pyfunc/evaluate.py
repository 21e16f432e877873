"""Metrics and plots of a probabilistic classifier."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no screen on servers and CI

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score, roc_curve


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


def roc_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> Figure:
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


def calibration_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> Figure:
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
