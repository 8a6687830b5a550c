"""Baselines on the synthetic cube: same split as the networks, recon store in the networks' layout."""

from __future__ import annotations

import numpy as np
import pytest

from gtws_dl.cells import load_cells
from gtws_dl.experiments.baselines import run_baseline
from gtws_dl.models.baselines import decayed
from gtws_dl.recon_store import open_finished
from gtws_dl.seasonal import fit_seasonal_trend, ridge_per_cell


def test_decayed_is_an_exponential_filter():
    x = np.zeros((30, 2), np.float32)
    x[0] = 1.0
    d = decayed(x, [3.0])[..., 0]
    a = 1 - np.exp(-1 / 3)
    np.testing.assert_allclose(d[:, 0], a * (1 - a) ** np.arange(30), rtol=1e-5)


def test_seasonal_trend_recovers_a_known_cycle_and_holds_the_trend():
    t = 2000 + (np.arange(240) + 0.5) / 12
    months = np.arange(240) % 12 + 1
    cyc = 10 * np.sin(2 * np.pi * months / 12)
    y = (cyc + 3.0 * (t - 2010))[:, None].repeat(2, 1)
    train = (t > 2005) & (t < 2015)
    fit = fit_seasonal_trend(np.where(train[:, None], y, np.nan), t, months, train, trend="extrapolate")
    np.testing.assert_allclose(fit, y, atol=1e-3)
    held = fit_seasonal_trend(y, t, months, train, trend="hold")
    np.testing.assert_allclose(held[0], held[12], atol=1e-3)  # flat before the fitted months


def test_ridge_per_cell_matches_lstsq():
    rng = np.random.default_rng(0)
    F = rng.standard_normal((50, 3, 4))
    beta = rng.standard_normal((3, 4))
    y = np.einsum("tcp,cp->tc", F, beta)
    np.testing.assert_allclose(ridge_per_cell(F, y, np.ones_like(y, bool), lam=0.0), beta, atol=1e-8)


@pytest.mark.parametrize("kind,kwargs,r_min", [
    ("climatology", {}, 0.35),
    ("grace_rec", {"p_channel": "tp", "t_channel": None, "p_taus": (2, 6, 12)}, 0.9),
    ("gbt", {"p_channel": "tp", "t_channel": None, "p_taus": (2, 6, 12), "n_estimators": 60,
             "max_rows": 20000, "num_leaves": 15}, 0.8),
])
def test_baseline_writes_recon_and_skill_before_grace(synthetic_cube, tmp_path, kind, kwargs, r_min):
    cells = load_cells(synthetic_cube["dir"], ["csr"], val_months=24, gap_months=12)
    info = run_baseline(kind, synthetic_cube["dir"], tmp_path / f"{kind}.zarr", targets=["csr"], cells=cells,
                        **kwargs)
    rec = open_finished(info["recon"])["twsa"].sel(target="csr").values
    land, truth = synthetic_cube["land"], synthetic_cube["truth"]
    assert np.isfinite(rec[:, land]).all() and np.isnan(rec[:, ~land]).all()
    pre = slice(12, 84)  # 1996-2001: never fitted
    r = np.corrcoef(rec[pre][:, land].ravel(), truth[pre][:, land].ravel())[0, 1]
    assert r > r_min, f"{kind}: r before GRACE {r:.2f}"
    assert info["parameters"] > 0 and "2011" in info["split"] or "val" in info["split"]
