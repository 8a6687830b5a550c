"""Decomposition: what is put in (trend, amplitude, phase) comes back out."""

import numpy as np
import pytest

from gtws_dl.seasonal import decimal_year, decompose, detrend_deseasonalize

T = decimal_year(np.arange("1990-01", "2021-01", dtype="datetime64[M]"))


def _series(t, slope=2.5, amp1=40.0, ph1=0.2, amp2=7.0, ph2=0.1, off=-3.0):
    return (off + slope * (t - 2000.0) + amp1 * np.cos(2 * np.pi * (t - ph1))
            + amp2 * np.cos(4 * np.pi * (t - ph2)))  # fmt: skip


def test_decimal_year_mid_month():
    t = decimal_year(np.array(["2002-01-01", "2002-12-16"], dtype="datetime64[ns]"))
    np.testing.assert_allclose(t, [2002 + 0.5 / 12, 2002 + 11.5 / 12])


def test_linear_trend_and_harmonics_recovered_per_cell():
    slopes = np.array([[2.5, -1.0], [0.0, 10.0]])
    y = _series(T[:, None, None], slope=slopes)
    d = decompose(y, T)
    np.testing.assert_allclose(d.coefficients[d.columns.index("tau")], slopes, atol=1e-6)
    amp, ph = d.amplitude_phase(1)
    np.testing.assert_allclose(amp, 40.0, atol=1e-6)
    np.testing.assert_allclose(ph, 0.2, atol=1e-8)
    amp2, ph2 = d.amplitude_phase(2)
    np.testing.assert_allclose([amp2.mean(), ph2.mean()], [7.0, 0.1], atol=1e-6)
    np.testing.assert_allclose(d.residual, 0.0, atol=1e-8)
    np.testing.assert_allclose(d.trend + d.seasonal, y, atol=1e-8)


def test_nan_gaps_and_fit_period_subset():
    y = _series(T)[:, None].repeat(3, axis=1)
    y[(T > 2017.5) & (T < 2018.6), 0] = np.nan  # GRACE gap
    y[T < 2002, 1] += 500.0 * np.sin(T[T < 2002])  # junk outside the fit period
    y[::2, 2] = np.nan
    d = decompose(y, T, fit_period=("2002", "2020"))
    np.testing.assert_allclose(d.coefficients[1], 2.5, atol=1e-6)
    assert np.isfinite(d.trend).all()  # components everywhere, also in gaps
    assert np.isnan(d.residual[(T > 2017.5) & (T < 2018.6), 0]).all()
    np.testing.assert_allclose(d.residual[T >= 2002, 1], 0.0, atol=1e-8)
    assert d.n_fit[0] == ((T >= 2002) & ~((T > 2017.5) & (T < 2018.6))).sum()


def test_quadratic_piecewise_and_climatology():
    y = 0.3 * (T - 2005) ** 2 + 1.0
    d = decompose(y, T, trend="quadratic", seasonal="none")
    np.testing.assert_allclose(d.trend, y, atol=1e-6)
    y = 1.0 * (T - 2000) + 2.0 * np.maximum(0, T - 2010)
    d = decompose(y, T, trend="piecewise", breakpoints=(2010.0,), seasonal="none")
    np.testing.assert_allclose(d.coefficients[1:3], [1.0, 2.0], atol=1e-6)
    clim = np.array([5, 3, 0, -4, -8, -6, -1, 2, 4, 6, 1, -2], float)
    clim -= clim.mean()
    y = 0.7 * (T - 2000) + clim[np.arange(T.size) % 12]
    d = decompose(y, T, seasonal="climatology")
    np.testing.assert_allclose(d.seasonal[:12], clim, atol=1e-8)
    np.testing.assert_allclose(detrend_deseasonalize(y, T, seasonal="climatology"), 0.0, atol=1e-8)


def test_too_few_samples_give_nan_and_errors():
    y = np.full((T.size, 2), np.nan)
    y[:, 0] = _series(T)
    y[:3, 1] = 1.0
    d = decompose(y, T)
    assert np.isnan(d.trend[:, 1]).all() and np.isfinite(d.trend[:, 0]).all()
    with pytest.raises(ValueError, match=r"y has shape \(372, 2\) and t has shape \(10,\)"):
        decompose(y, T[:10])
    with pytest.raises(ValueError, match="holds no time step"):
        decompose(y, T, fit_period=(1800.0, 1801.0))
    with pytest.raises(ValueError, match="trend must be"):
        decompose(y, T, trend="cubic")
