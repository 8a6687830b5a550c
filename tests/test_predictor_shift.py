"""The ingest measures how far the pre-GRACE predictors are from those the network is fitted on."""

import numpy as np
import pandas as pd
import pytest

from gtws_dl.cube.shift import CellMoments, summarize, warnings

TIMES = pd.date_range("1980-01", "2019-12", freq="MS")
PERIOD = ("2002-04", "2019-12")


def _block(rng, H=6, W=8):
    """(time, 3, H, W): channel 0 drifts by one std before the period, 1 does not, 2 is a constant before it
    (a climatology-filled LAI)."""
    before = TIMES < pd.Timestamp(PERIOD[0])
    x = rng.normal(0.0, 1.0, (len(TIMES), 3, H, W))
    x[before, 0] += 1.0
    x[before, 2] = 0.0
    return x.astype(np.float32)


def test_shift_of_the_mean_and_of_the_spread_is_measured_and_named():
    rng = np.random.default_rng(1)
    land = np.ones((6, 8), bool)
    land[0] = False
    block = _block(rng)
    m = CellMoments(land, 3, PERIOD)
    m.add(block[:100], TIMES[:100], 0)  # two time blocks
    m.add(block[100:], TIMES[100:], 0)
    s = summarize(m, ["t2m", "tp", "lai"], TIMES[0], norm_std=[2.0, 1.0, 1.0])
    assert s["before"] == ["1980-01", "2002-03"] and s["channels"]["t2m"]["cells"] == 40  # the land cells
    # one cell std = half a normalisation std of t2m
    assert s["channels"]["t2m"]["median_abs_shift_norm"] == pytest.approx(0.5, abs=0.08)
    assert s["channels"]["t2m"]["median_abs_shift_cell"] == pytest.approx(1.0, abs=0.15)
    assert s["channels"]["tp"]["median_abs_shift_norm"] < 0.1
    assert s["channels"]["tp"]["median_std_ratio"] == pytest.approx(1.0, abs=0.15)
    assert s["channels"]["lai"]["median_std_ratio"] < 0.01
    found = warnings(s)
    assert [w.split(":")[0] for w in found] == ["t2m", "lai"]
    # latitude bands give the same numbers as the whole field
    b = CellMoments(land, 3, PERIOD)
    b.add(block[:, :, :3], TIMES, 0)
    b.add(block[:, :, 3:], TIMES, 3)
    np.testing.assert_allclose(b.acc, m.acc, rtol=1e-10)


def test_no_month_before_the_period_gives_no_shift(tmp_path):
    land = np.ones((2, 2), bool)
    m = CellMoments(land, 1, ("1980-01", "2019-12"))
    m.add(np.ones((len(TIMES), 1, 2, 2), np.float32), TIMES, 0)
    assert summarize(m, ["tp"], TIMES[0], [1.0]) is None and warnings(None) == []
    m.save(tmp_path / "m.npy")
    other = CellMoments(np.ones((3, 3), bool), 1, ("1980-01", "2019-12"))
    assert not other.restore(tmp_path / "m.npy")  # another grid: not resumed
