"""Slow-signal metrics with known answers: the low-pass signal, its amplitude ratio, trends and their agreement."""

import numpy as np
import pandas as pd
import pytest

from gtws_dl.evaluate import skill
from gtws_dl.evaluate.trends import area_mean, series_trend, trend_agreement, trend_map

TIMES = pd.date_range("2002-01", periods=240, freq="MS")
MONTHS = TIMES.month.values
T = np.arange(240) / 12.0
SEAS = 40 * np.cos(2 * np.pi * (MONTHS - 4) / 12)
SLOW = 25 * np.sin(2 * np.pi * T / 7.0)  # a 7-year drought/wet cycle


def test_lowpass_removes_the_seasonal_cycle_and_keeps_a_slow_cycle():
    y = (SEAS + SLOW + 100.0)[:, None]
    lp = skill.lowpass(y, MONTHS)[:, 0]
    assert np.isnan(lp[:6]).all() and np.isnan(lp[-5:]).all()  # incomplete windows at the ends
    ok = np.isfinite(lp)
    # a 12-month mean of a 7-year sine keeps ≈ sinc(1/7) of its amplitude, and the seasonal cycle cancels
    ref = SLOW - SLOW.mean()
    np.testing.assert_allclose(lp[ok], np.sinc(1 / 7.0) * ref[ok], atol=1.6)
    assert np.nanstd(skill.lowpass(SEAS[:, None], MONTHS)) < 1e-9


def test_amplitude_ratio_of_a_damped_copy():
    y = (SEAS + SLOW)[:, None]
    lp_o, lp_s = skill.lowpass(y, MONTHS), skill.lowpass(0.45 * y + 3.0, MONTHS)
    np.testing.assert_allclose(skill.amplitude_ratio(lp_s, lp_o), 0.45, rtol=1e-9)
    np.testing.assert_allclose(skill.pearson_r(lp_s, lp_o), 1.0)


def test_trend_map_recovers_slopes_despite_seasons_and_gaps():
    slopes = np.array([[-12.0, 0.0], [3.5, 40.0]])  # mm/yr
    y = SEAS[:, None, None] + slopes[None] * (T - T.mean())[:, None, None] + 5.0
    y[30:41] = np.nan  # an 11-month gap like GRACE -> GRACE-FO
    y[::7, 0, 1] = np.nan  # scattered missing months in one cell
    np.testing.assert_allclose(trend_map(y, TIMES), slopes, atol=1e-9)
    assert np.isnan(trend_map(y[:24], TIMES[:24])).all()  # too few months: no trend


def test_area_mean_weights_cells_and_skips_missing_ones():
    y = np.ones((3, 1, 2)) * np.array([1.0, 4.0])
    y[1, 0, 1] = np.nan
    am = area_mean(y, np.array([[1.0, 3.0]]), np.ones((1, 2), bool))
    np.testing.assert_allclose(am, [3.25, 1.0, 3.25])
    np.testing.assert_allclose(series_trend(np.arange(240) / 12.0 * 2.0, TIMES), 2.0, atol=1e-9)


def test_trend_agreement_perfect_and_flat():
    slopes = np.array([[-10.0, -2.0], [1.0, 6.0]])
    obs = SEAS[:, None, None] + slopes[None] * (T - T.mean())[:, None, None]
    area = np.ones((2, 2))
    regions = {"land": np.ones((2, 2), bool)}
    same = trend_agreement(obs.copy(), obs, TIMES, cell_area=area, regions=regions)
    np.testing.assert_allclose(same["land_trend_sim"], slopes.mean(), atol=1e-9)
    np.testing.assert_allclose(same["land_trend_obs"], slopes.mean(), atol=1e-9)
    assert same["land_trend_err_rel"] < 1e-9
    flat = trend_agreement(SEAS[:, None, None] + 0 * obs, obs, TIMES, cell_area=area, regions=regions)
    np.testing.assert_allclose(flat["land_trend_sim"], 0.0, atol=1e-9)
    np.testing.assert_allclose(flat["land_trend_err_rel"], 1.0)  # every cell's error = its own trend


def test_slow_loss_is_the_error_of_window_means():
    import torch

    from gtws_dl.models.module import masked_slow_mse

    y = torch.zeros(2, 24, 1, 3, 3)
    mask = torch.zeros_like(y, dtype=torch.bool)
    mask[:, 12:] = True  # the loss months after a 12-month warm-up
    pred = y.clone()
    pred[:, 12:] += 0.5  # a constant 0.5 bias: the window means are off by 0.5
    pred[:, 12::2] += 1.0  # plus month-to-month noise that averages to +0.5 more
    assert masked_slow_mse(pred, y, mask).item() == pytest.approx(1.0)
    mask[1] = False  # a window with no loss months does not count
    mask[0, 12:20] = False  # 4 months left < min_months: not counted either -> nothing counts
    assert masked_slow_mse(pred, y, mask).item() == 0.0
