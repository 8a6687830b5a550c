"""Evaluation protocol, deep-ensemble merge, heteroscedastic head end to end, leaderboard config."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from gtws_dl.config import conf_dir
from gtws_dl.evaluate.protocol import evaluate
from gtws_dl.recon_store import combine_ensemble, write_reconstruction
from gtws_dl.seasonal import remove_climatology_trend


def test_remove_climatology_trend_removes_a_known_trend_and_cycle():
    times = pd.date_range("2000-01", periods=48, freq="MS")
    t = (times.year + (times.month - 0.5) / 12).values
    noise = np.random.default_rng(0).standard_normal((48, 2, 3))
    y = 5 * np.sin(2 * np.pi * times.month.values / 12)[:, None, None] + 2 * (t - 2000)[:, None, None] + noise
    y[7, 0, 0] = np.nan  # a gap in one cell only
    r = remove_climatology_trend(y, t, times.month.values)
    assert np.isnan(r[7, 0, 0]) and np.isfinite(r[:, 1]).all()
    assert abs(np.corrcoef(r[:, 1, 1], noise[:, 1, 1])[0, 1]) > 0.75
    clean = remove_climatology_trend(y - noise, t, times.month.values)  # trend + cycle only: nothing left
    np.testing.assert_allclose(np.nan_to_num(clean), 0.0, atol=1e-8)


def test_evaluate_perfect_and_calibration():
    rng = np.random.default_rng(1)
    times = pd.date_range("2001-01", periods=36, freq="MS")
    obs = rng.standard_normal((36, 4, 5)) * 30
    area = np.ones((4, 5))
    regions = {"land": np.ones((4, 5), bool)}
    out = evaluate(obs.copy(), obs, times, cell_area=area, regions=regions)
    assert out["land_full_r"] == pytest.approx(1) and out["land_full_rmse"] == pytest.approx(0)
    assert out["land_full_nse"] == pytest.approx(1) and out["land_full_cnse"] == pytest.approx(1)
    sim = obs + rng.standard_normal(obs.shape) * 10  # errors N(0, 10): a 10 mm std is calibrated
    out = evaluate(sim, obs, times, cell_area=area, regions=regions, sim_std=np.full(obs.shape, 10.0))
    assert out["land_calib68"] == pytest.approx(0.683, abs=0.05)


def test_combine_ensemble_mean_and_total_spread(tmp_path):
    times = pd.date_range("2000-01", periods=12, freq="MS")
    lat, lon = np.array([0.0, 1.0]), np.array([0.0, 1.0, 2.0])
    shape = (1, 12, 2, 3)
    a = write_reconstruction(tmp_path / "a.zarr", np.full(shape, 1.0), targets=["csr"], times=times, lat=lat,
                             lon=lon, twsa_std=np.full(shape, 3.0))
    b = write_reconstruction(tmp_path / "b.zarr", np.full(shape, 3.0), targets=["csr"], times=times, lat=lat,
                             lon=lon, twsa_std=np.full(shape, 1.0))
    out = combine_ensemble([a, b], tmp_path / "ens.zarr")
    import xarray as xr

    ds = xr.open_zarr(out, consolidated=False)
    np.testing.assert_allclose(ds["twsa"].values, 2.0)
    np.testing.assert_allclose(ds["twsa_std"].values, np.sqrt((9 + 1) / 2 + 1.0), rtol=1e-6)


def test_leaderboard_config_lists_baselines_and_networks():
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        cfg = compose("leaderboard")
    kinds = {v.kind for v in cfg.models.values()}
    assert kinds == {"baseline", "deep"} and cfg.split.val_months == 24
    assert {"climatology", "grace_rec", "gbt", "convlstm", "unet"} <= set(cfg.models)


@pytest.mark.slow
def test_gaussian_unet_trains_and_reconstructs_std(synthetic_cube, tmp_path):
    from gtws_dl.checkpoint import load_checkpoint
    from gtws_dl.reconstruct import reconstruct
    from gtws_dl.training import train

    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        cfg = compose("train", overrides=[
            f"paths.output_dir={tmp_path}", f"paths.cube_dir={synthetic_cube['dir']}", "grid.res=10",
            "target=csr", "model=unet", "model.likelihood=gaussian", "model.net.lags=3", "model.net.base=8",
            "model.net.encoder=8", "datamodule.window=12", "datamodule.warmup=2", "datamodule.patch=[18,null]",
            "datamodule.batch_size=4", "datamodule.samples_per_epoch=32", "trainer.max_epochs=4",
            "model.optimizer.lr=1e-2", "trainer.enable_progress_bar=false",
        ])
    summary = train(cfg)
    assert summary["model"] == "UNet" and summary["likelihood"] == "gaussian"
    module = load_checkpoint(summary["last_checkpoint"])
    out = reconstruct(module, synthetic_cube["dir"], tmp_path / "recon.zarr", ckpt_path=summary["last_checkpoint"],
                      progress=False)
    import xarray as xr

    ds = xr.open_zarr(out, consolidated=False)
    land = synthetic_cube["land"]
    rec, std = ds["twsa"].sel(target="csr").values, ds["twsa_std"].sel(target="csr").values
    assert (std[:, land] > 0).all() and np.isnan(std[:, ~land]).all()
    pre = slice(12, 84)
    r = np.corrcoef(rec[pre][:, land].ravel(), synthetic_cube["truth"][pre][:, land].ravel())[0, 1]
    assert r > 0.7, f"U-Net correlation with the known truth before GRACE is only {r:.2f}"


def test_grace_target_ceiling_row_scores_the_targets_over_their_months(synthetic_cube, tmp_path):
    """The ceiling row: the cube's targets scored like a model, with slow-signal and trend columns."""
    import xarray as xr

    from gtws_dl.experiments.leaderboard import GRACE_TARGET, _evaluated

    g, times = synthetic_cube["grid"], synthetic_cube["times"]
    truth = xr.DataArray(np.where(synthetic_cube["land"], synthetic_cube["truth"], np.nan),
                         dims=("time", "lat", "lon"), coords={"time": times, "lat": g.lat, "lon": g.lon})
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        cfg = compose("leaderboard", overrides=[f"paths.cube_dir={synthetic_cube['dir']}", f"out_dir={tmp_path}",
                                                "grid.res=10", "centres=[csr]"])
    rows = _evaluated(cfg, GRACE_TARGET, {"recon": None}, truth, truth)  # a fresh out_dir: no model folder yet
    assert (tmp_path / GRACE_TARGET / "leaderboard_eval.json").exists()  # cached (a fresh clone failed here)
    land = next(r for r in rows if r["region"] == "land excl. Greenland & Antarctica")
    # targets = truth + 2 mm white noise over the GRACE months: near-perfect against the truth ...
    assert land["truth_full_r"] > 0.99 and land["forced_full_r"] > 0.99
    # ... the 12-month low-pass averages the noise away: amplitude ratio 1 within a few per cent
    assert abs(land["forced_lp_amp"] - 1.0) < 0.05 and land["forced_lp_r"] > 0.98
    # its trends against itself agree exactly
    assert land["trend_land_mm_yr"] == pytest.approx(land["trend_land_grace_mm_yr"])
    assert land["trend_land_cell_err_rel"] == pytest.approx(0.0, abs=1e-9)
