"""The calibration's spread: the scatter of the true landmarks around each calibrated position, without the crops a
detector put on something else, printed as source that reads back as the tables placement keeps."""

from __future__ import annotations

import numpy as np

from fbench.data.calibrate import Measured, fit, table_source
from fbench.data.faces import FRONTAL
from fbench.data.placement import CALIBRATED_SPREAD, CALIBRATED_TABLE


def faces(offsets: list[float]) -> list[Measured]:
    """Frontal crops of S faces whose landmarks all sit ``offset`` right of a common position."""
    base = np.array(CALIBRATED_TABLE[FRONTAL]["S"], np.float64)
    shifted = [base + np.array([offset, 0.0]) for offset in offsets]
    return [Measured("S", FRONTAL, points, points, 0.7, np.zeros((1, 1, 3), np.uint8), points) for points in shifted]


def test_the_spread_is_the_scatter_of_the_usual_crops():
    usual = [(-1) ** i * 0.001 * i for i in range(20)]  # up to +-0.019 off
    table, spread = fit(faces(usual + [0.4, -0.5]), percentile=95)  # two boxes on something else
    x_spread, y_spread = np.array(spread[FRONTAL]["S"]).T
    median_x = np.median(usual + [0.4, -0.5])
    expected = np.percentile(np.abs(np.array(usual) - median_x), 95)
    assert np.allclose(x_spread, expected, atol=1e-3) and np.all(y_spread == 0.0)  # rounded to 0.001
    # With the far-off crops counted, the spread would be the whole face.
    _, counted = fit(faces(usual + [0.4, -0.5]), percentile=95, outlier=1e9)
    assert np.array(counted[FRONTAL]["S"])[:, 0].min() > 0.3
    assert np.allclose(np.array(table[FRONTAL]["S"]), np.array(CALIBRATED_TABLE[FRONTAL]["S"]) + [median_x, 0],
                       atol=1e-3)


def test_the_printed_tables_read_back():
    table, spread = fit(faces([0.0, 0.01, -0.01, 0.02, -0.02, 0.005]))
    scope: dict = {}
    exec(table_source(table, spread, {"frontal/S": 6}, "6 faces"), scope)
    assert scope["CALIBRATED_TABLE"] == table and scope["CALIBRATED_SPREAD"] == spread
    # The tables kept in placement cover the same crops and poses, and every spread is a half-width.
    assert {how: set(p) for how, p in CALIBRATED_SPREAD.items()} == {how: set(p) for how, p in CALIBRATED_TABLE.items()}
    assert all(x >= 0 and y >= 0 for poses in CALIBRATED_SPREAD.values() for points in poses.values()
               for x, y in points)
