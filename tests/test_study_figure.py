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
