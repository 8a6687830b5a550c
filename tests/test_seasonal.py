"""Decomposition and the monthly-means + trend fits: what is put in (trend, cycle, phase) comes back out."""

import numpy as np
import pandas as pd
import pytest

from gtws_dl.seasonal import (
    decimal_year,
    decompose,
    detrend_deseasonalize,
    fit_seasonal_trend,
    remove_climatology_trend,
    residual_of_fit,
    ridge_per_cell,
    seasonal_trend_design,
)

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


# ---------------------------------------------------------------- monthly means + linear trend fits
TIMES = pd.date_range("2000-01", "2019-12", freq="MS")
TY, MONTHS = decimal_year(TIMES), TIMES.month.values
CYCLE = np.array([5, 3, 0, -4, -8, -6, -1, 2, 4, 6, 1, -2], float) * 10.0  # mm, by calendar month


def test_decimal_year_is_bit_identical_to_the_inline_formula_it_replaced():
    inline = (TIMES.year + (TIMES.month - 0.5) / 12.0).values.astype(float)
    assert decimal_year(TIMES).dtype == np.float64
    np.testing.assert_array_equal(decimal_year(TIMES), inline)
    np.testing.assert_array_equal(decimal_year(TIMES + pd.Timedelta(days=14)), inline)


def test_seasonal_trend_design_columns_and_hold():
    d = seasonal_trend_design(TY, MONTHS, t_range=(2005.0, 2015.0), trend="hold")
    assert d.shape == (TY.size, 13)
    np.testing.assert_array_equal(d[:, :12].argmax(1) + 1, MONTHS)
    np.testing.assert_allclose(d[:, 12], (np.clip(TY, 2005.0, 2015.0) - 2010.0) / 10.0)
    assert seasonal_trend_design(TY, MONTHS, t_range=None, trend="none").shape == (TY.size, 12)


def test_fit_seasonal_trend_gives_back_the_trend_and_cycle_put_in():
    slopes = np.array([3.0, -1.5, 0.0])  # mm/yr per cell
    y = CYCLE[MONTHS - 1][:, None] + slopes[None] * (TY - 2010.0)[:, None] + 7.0
    train = (TIMES >= "2004-01") & (TIMES <= "2015-12")
    y_in = np.where(train[:, None], y, np.nan)
    y_in[(TIMES >= "2011-07") & (TIMES <= "2012-05"), 1] = np.nan  # a gap in one cell
    fit = fit_seasonal_trend(y_in, TY, MONTHS, train, trend="extrapolate")
    assert fit.dtype == np.float32 and fit.shape == y.shape
    np.testing.assert_allclose(fit, y, atol=2e-3)  # also outside the training months and in the gap
    clim = fit_seasonal_trend(y_in, TY, MONTHS, train, trend="none")  # monthly means only
    np.testing.assert_allclose(clim[:, 2], y[:, 2], atol=2e-3)


def test_fit_seasonal_trend_hold_is_flat_outside_the_fitted_months():
    y = (CYCLE[MONTHS - 1] + 2.0 * (TY - 2010.0))[:, None]
    train = (TIMES >= "2004-01") & (TIMES <= "2015-12")
    fit = fit_seasonal_trend(np.where(train[:, None], y, np.nan), TY, MONTHS, train, trend="hold")[:, 0]
    trend = fit - CYCLE[MONTHS - 1]
    t0, t1 = TY[train][0], TY[train][-1]
    np.testing.assert_allclose(trend[TY <= t0], 2.0 * (t0 - 2010.0), atol=2e-3)
    np.testing.assert_allclose(trend[TY >= t1], 2.0 * (t1 - 2010.0), atol=2e-3)
    np.testing.assert_allclose(trend[train], 2.0 * (TY[train] - 2010.0), atol=2e-3)  # the line inside


def test_ridge_per_cell_is_least_squares_at_zero_lambda_and_zero_without_data():
    rng = np.random.default_rng(0)
    F = rng.standard_normal((60, 3, 4))
    beta = rng.standard_normal((3, 4))
    y = np.einsum("tcp,cp->tc", F, beta)
    y[:, 2] = np.nan
    b = ridge_per_cell(F, y, np.ones_like(y, bool), lam=1e-12)  # ~0; > 0 keeps the empty cell solvable
    np.testing.assert_allclose(b[:2], beta[:2], atol=1e-8)
    np.testing.assert_array_equal(b[2], 0.0)


def test_remove_climatology_trend_leaves_white_noise():
    rng = np.random.default_rng(3)
    noise = rng.standard_normal((TY.size, 4, 5)) * 4.0
    signal = CYCLE[MONTHS - 1][:, None, None] + rng.uniform(-5, 5, (4, 5))[None] * (TY - 2010.0)[:, None, None]
    y = signal + noise
    y[(TIMES >= "2017-07") & (TIMES <= "2018-05")] = np.nan  # a gap in every cell
    y[:30, 0, 0] = np.nan  # and one cell starting later
    r = remove_climatology_trend(y, TY, MONTHS)
    assert np.array_equal(np.isnan(r), np.isnan(y))
    np.testing.assert_allclose(np.nan_to_num(remove_climatology_trend(signal, TY, MONTHS)), 0.0, atol=1e-8)
    ok = np.isfinite(r[:, 1, 1])
    res, t = r[ok, 1, 1], TY[ok]
    for m in range(1, 13):  # no monthly cycle left
        assert abs(res[MONTHS[ok] == m].mean()) < 1e-9
    assert abs(np.polyfit(t, res, 1)[0]) < 1e-9  # no trend left
    z = r.reshape(TY.size, -1)
    lag1 = [np.corrcoef(c[np.isfinite(c)][1:], c[np.isfinite(c)][:-1])[0, 1] for c in z.T]
    assert abs(np.mean(lag1)) < 0.05  # white: no serial correlation
    assert 3.6 < np.nanstd(z) < 4.1  # the noise (4 mm), less the 13 degrees of freedom fitted
    fin = np.isfinite(z)
    assert np.corrcoef(z[fin], noise.reshape(TY.size, -1)[fin])[0, 1] > 0.95  # what is left is the noise put in


def test_residual_of_a_kept_fit_equals_the_decomposition_at_the_same_months():
    """The monthly update: new months' residuals from the coefficients a publication kept equal what
    ``decompose`` gives at those months (bit for bit); wrong coefficient shapes are refused."""
    rng = np.random.default_rng(3)
    y = _series(T)[:, None, None] + rng.normal(0, 5, (len(T), 3, 4))
    y[5, 0, 0] = np.nan
    d = decompose(y, T, fit_period=("1990", "2015"), n_harmonics=2)
    got = residual_of_fit(y[300:], T[300:], d.coefficients, t_ref=d.t_ref, n_harmonics=2)
    np.testing.assert_array_equal(got, d.residual[300:])
    with pytest.raises(ValueError, match="coefficients have shape"):
        residual_of_fit(y[300:], T[300:], d.coefficients[:4], t_ref=d.t_ref)
