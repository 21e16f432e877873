import io

import numpy as np
import pytest

from chaos_pyfunc.lifecycle import evaluate


def test_lift_of_a_perfect_ranking_is_one_over_the_base_rate() -> None:
    y = np.array([1] * 10 + [0] * 90)
    scores = np.linspace(1, 0, 100)
    assert evaluate.lift_top_decile(y, scores) == pytest.approx(10.0)


def test_lift_of_a_useless_ranking_is_one() -> None:
    y = np.tile([1, 0, 0, 0], 250)
    assert evaluate.lift_top_decile(y, np.zeros(1000)) == pytest.approx(1.0, abs=0.05)


def test_metrics_of_a_perfect_classifier() -> None:
    y = np.array([0, 0, 1, 1])
    result = evaluate.metrics(y, np.array([0.0, 0.0, 1.0, 1.0]))
    assert result == {"roc_auc": 1.0, "pr_auc": 1.0, "brier": 0.0, "lift_top_decile": 2.0}


@pytest.mark.parametrize("make", [evaluate.roc_figure, evaluate.calibration_figure])
def test_figures_render_to_png(make) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    scores = np.clip(y * 0.3 + rng.random(500) * 0.7, 0, 1)
    figure = make({"time": (y, scores), "random": (y, scores[::-1])})
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    assert buffer.getvalue().startswith(b"\x89PNG")
    assert len(figure.axes[0].lines) == 3  # two curves and the diagonal
