"""The study figure's score axis: zoomed onto the good trials when a few are far off."""

from __future__ import annotations

import numpy as np
import pytest

from scripts.figures.study import _score_window


def test_far_off_trials_fall_outside_the_window_in_the_bad_direction():
    ppl = np.array([116.4, 117.4, 119.0, 120.5, 121.1, 123.4, 134.8, 687.3, 711.5])
    low, high = _score_window(ppl, lower_is_better=True)
    assert low < 116.4 and 134.8 < high < 687.3  # median 121.1, reach 5 x 4.7
    acc = np.array([0.93, 0.92, 0.91, 0.90, 0.10])
    low, high = _score_window(acc, lower_is_better=False)
    assert 0.10 < low < 0.90 and high > 0.93


@pytest.mark.parametrize("scores", [[1.0, 2.0], [3.0, 3.1, 3.2, 3.3]])
def test_no_window_when_every_trial_fits_or_too_few(scores):
    assert _score_window(np.array(scores), lower_is_better=True) is None


def test_expected_best_panel_shares_the_window_and_values_the_points_beyond_it():
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from scripts.figures.study import plot

    scores = [116.4, 117.4, 119.0, 120.5, 121.1, 123.4, 134.8, 711.5]
    trials = pd.DataFrame({"panel": "trials", "study": "s", "scale": "cpu", "task": "ptb", "dataset": "ptb",
                           "arm": "sgd", "optim": "sgd", "optim.lr": np.geomspace(0.3, 6.0, len(scores)),
                           "score": scores, "diverged": False})
    expected = pd.DataFrame({"panel": "expected", "arm": "sgd", "metric": "val_ppl", "n": [1, 2, 3],
                             "expected_best": [300.0, 118.0, 116.4], "std": [1.0, 1.0, 0.0], "budget": 8})
    fig, (ax_a, ax_b, _) = plot(pd.concat([trials, expected], ignore_index=True))
    window = _score_window(np.array(scores), lower_is_better=True)
    assert ax_a.get_ylim() == pytest.approx(window) and ax_b.get_ylim() == pytest.approx(window)
    assert [t.get_text() for t in ax_a.texts] == ["300"]  # n = 1 is beyond the window: an edge mark, valued
    assert "beyond, valued" in ax_a.get_title()
