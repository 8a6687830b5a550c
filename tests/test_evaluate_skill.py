"""Skill metrics with known answers."""

import numpy as np
import pytest

from gtws_dl.evaluate import skill

RNG = np.random.default_rng(42)
MONTHS = np.tile(np.arange(1, 13), 10)
SEAS = 30 * np.cos(2 * np.pi * (MONTHS - 4) / 12)
OBS = SEAS[:, None] + RNG.normal(0, 5, (120, 3)) + 100.0


def test_perfect_prediction():
    for f in (skill.pearson_r, skill.nse, skill.kge):
        np.testing.assert_allclose(f(OBS, OBS), 1.0)
    np.testing.assert_allclose(skill.cyclostationary_nse(OBS, OBS, MONTHS), 1.0)
    np.testing.assert_allclose(skill.rmse(OBS, OBS), 0.0)
    np.testing.assert_allclose(skill.bias(OBS + 2.0, OBS), 2.0)


def test_climatology_scores_zero_and_r_is_scale_invariant():
    clim = skill.climatology(OBS, MONTHS)[MONTHS - 1]
    np.testing.assert_allclose(skill.cyclostationary_nse(clim, OBS, MONTHS), 0.0, atol=1e-12)
    np.testing.assert_allclose(skill.nse(np.full_like(OBS, OBS.mean(0)), OBS), 0.0, atol=1e-12)
    sim = OBS + RNG.normal(0, 3, OBS.shape)
    np.testing.assert_allclose(skill.pearson_r(5 * sim - 7, OBS), skill.pearson_r(sim, OBS))
    np.testing.assert_allclose(skill.rmse(OBS + 3.0, OBS), 3.0)
    # KGE: sim = 2*obs -> r=1, alpha=2, beta=2 -> 1 - sqrt(2)
    np.testing.assert_allclose(skill.kge(2 * OBS, OBS), 1 - np.sqrt(2))


def test_nan_masking_and_deseasonalize():
    sim = OBS.copy()
    obs = OBS.copy()
    obs[::3, 0] = np.nan
    sim[1::3, 0] = np.nan
    sim[:, 1] += 1.0
    np.testing.assert_allclose(skill.bias(sim, obs), [0.0, 1.0, 0.0])
    r = skill.pearson_r(np.full_like(obs, np.nan), obs)
    assert np.isnan(r).all()
    d = skill.deseasonalize(obs, MONTHS)
    np.testing.assert_allclose(np.nanmean(d[MONTHS == 5], axis=0), 0.0, atol=1e-12)
    assert skill.nse(OBS[:, 0], OBS[:, 0]).shape == ()


def test_weighted_median():
    assert skill.weighted_median(np.array([1.0, 2, 3, 4]), np.array([1.0, 1, 1, 10])) == 4.0
    assert skill.weighted_median(np.array([1.0, 2, 3, 4]), np.ones(4)) == np.median([1, 2, 3, 4])
    assert skill.weighted_median(np.array([5.0, 1, 3]), np.ones(3)) == 3.0
    assert skill.weighted_median(np.array([1.0, 2, 3]), np.array([1.0, 0, 1])) == 2.0
    v = np.array([[1.0, np.nan], [3.0, 100.0]])
    assert skill.weighted_median(v, np.ones((2, 2)), np.array([[True, True], [True, False]])) == 2.0
    # area weights: a big polar-free cell dominates
    area = np.array([[1.0, 1.0], [1.0, 10.0]])
    assert skill.area_weighted_median(np.array([[0.1, 0.2], [0.3, 0.9]]), area) == 0.9


def test_validation_errors():
    with pytest.raises(ValueError, match=r"sim has shape \(3,\) and obs has shape \(4,\)"):
        skill.nse(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match=r"months has shape \(5,\), expected \(120,\)"):
        skill.cyclostationary_nse(OBS, OBS, MONTHS[:5])
    with pytest.raises(ValueError, match="non-negative"):
        skill.weighted_median(np.ones(2), np.array([1.0, -1.0]))
