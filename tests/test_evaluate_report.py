"""Evaluation report: budget/ENSO helpers with known answers, and the report end to end on a tiny fake run."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hydra import compose, initialize_config_dir

from gtws_dl.config import conf_dir
from gtws_dl.cube.writer import CubeWriter
from gtws_dl.evaluate import budget, enso
from gtws_dl.evaluate.report import build_report
from gtws_dl.evaluate.skill import deseasonalize
from gtws_dl.grid import Grid
from gtws_dl.landmask import land_fraction, land_mask
from gtws_dl.post.manifest import write_products_manifest
from gtws_dl.post.products import write_twsa_product
from gtws_dl.post.publish import product_name
from gtws_dl.post.regions import region_masks
from gtws_dl.post.series import regional_series
from gtws_dl.seasonal import decimal_year, detrend_deseasonalize

RES = 10.0
START, END = "1996-01", "2011-12"


# ----------------------------------------------------------------------------------------- unit tests
def test_sle_conversion_sign_and_scale():
    assert budget.GT_PER_MM_SLE == pytest.approx(361.8)
    assert budget.gt_to_sle_mm(-361.8) == pytest.approx(1.0)  # land loses 361.8 Gt -> sea rises 1 mm
    assert budget.gt_to_sle_mm(724.0) == pytest.approx(-724.0 / 361.8)
    np.testing.assert_allclose(budget.sle_mm_to_gt(budget.gt_to_sle_mm([5.0, -3.0])), [5.0, -3.0])


def test_storage_change_matches_flux_exactly():
    rng = np.random.default_rng(1)
    times = pd.date_range("2000-01", periods=60, freq="MS")
    flux_day = rng.normal(0, 2, (60, 3))  # P - E - R, mm/day
    flux = budget.per_month(flux_day, times)
    np.testing.assert_allclose(flux[:, 0], flux_day[:, 0] * times.days_in_month.to_numpy())
    s = budget.storage_from_flux(flux, s0=7.0)
    d, f = budget.centred_difference(s), budget.centred_flux(flux)
    assert np.isnan(d[0]).all() and np.isnan(d[-1]).all()
    np.testing.assert_allclose(d[1:-1], f[1:-1], atol=1e-10)
    # water_balance with ERA5 signs: tp + e - R
    wb = budget.water_balance(s[:, 0], flux_day[:, 0] + 3.0, np.full(60, -1.0), np.full(60, 2.0), times)
    np.testing.assert_allclose(wb["dsdt"].values[1:-1], wb["p_e_r"].values[1:-1], atol=1e-10)


def test_linear_trend_and_budget_numbers():
    times = pd.date_range("1940-01", "2001-12", freq="MS")
    t = np.arange(len(times)) / 12.0
    truth = pd.Series(-50.0 * t + 30 * np.sin(2 * np.pi * t), index=times)
    rec = pd.Series(-40.0 * t + 30 * np.sin(2 * np.pi * t), index=times)
    assert budget.linear_trend(truth.values, times) == pytest.approx(-50.0, rel=1e-3)
    n = budget.mass_budget_numbers(rec, truth, ("1940-01", "2001-12"))
    assert n["n_months"] == len(times)
    assert n["trend_error_gt_yr"] == pytest.approx(10.0, rel=1e-3)
    assert n["trend_error_mm_sle_yr"] == pytest.approx(-10.0 / 361.8, rel=1e-3)
    assert 0.9 < n["r"] <= 1.0


def test_enso_composite_recovers_k():
    rng = np.random.default_rng(2)
    x = np.convolve(rng.normal(0, 1, 400), np.ones(6) / 3, mode="same")
    k = np.array([[3.0, -2.0], [0.0, np.nan]])
    field = x[:, None, None] * k[None]
    out = enso.composite(field, x, threshold=0.5)
    np.testing.assert_allclose(out.regression[np.isfinite(k)], k[np.isfinite(k)], atol=1e-10)
    gap = x[x > 0.5].mean() - x[x < -0.5].mean()
    np.testing.assert_allclose(out.composite[np.isfinite(k)], k[np.isfinite(k)] * gap, atol=1e-10)
    assert out.n_nino == (x > 0.5).sum() and out.n_nina == (x < -0.5).sum()
    assert np.isnan(out.regression[1, 1])


def test_enso_index_from_box():
    times = pd.date_range("1990-01", periods=120, freq="MS")
    lat, lon = np.arange(-15, 16, 10.0), np.arange(-175, 176, 10.0)
    sig = np.sin(np.arange(120) / 7.0)
    seas = 2 * np.cos(2 * np.pi * times.month.to_numpy() / 12)
    data = 290 + np.zeros((120, lat.size, lon.size)) + seas[:, None, None]
    inbox = (np.abs(lat)[:, None] <= 5) & (lon[None] >= -170) & (lon[None] <= -120)
    data = data + sig[:, None, None] * inbox
    da = xr.DataArray(data, dims=("time", "lat", "lon"), coords={"time": times, "lat": lat, "lon": lon})
    idx = enso.enso_index(enso.box_mean(da), running=1)
    np.testing.assert_allclose(idx.values, deseasonalize(sig, times.month.to_numpy()), atol=1e-9)
    with pytest.raises(ValueError, match="holds no grid point"):
        enso.box_mean(da, (10.0, 20.0, 50.0, 60.0))


# ----------------------------------------------------------------------------------------- end to end
def _write_cube(cube_dir: Path, grid: Grid, times: pd.DatetimeIndex, channels: dict[str, np.ndarray],
                units: dict[str, str], targets: np.ndarray):
    """A finished cube (manifest, predictors.zarr with raw physical channels, targets.zarr), as ingest writes it."""
    w = CubeWriter(cube_dir, grid, times, list(channels), land_fraction=land_fraction(grid),
                   stats_period=("2002-04", END), units=units, n_targets=len(targets))
    w.write_block(0, np.stack([channels[c] for c in channels], axis=1).astype(np.float32))
    w.write_targets(["jpl", "csr", "gsfc"], targets, baseline=("2004-01", "2009-12"))
    w.finish(fingerprint="test")


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    grid = Grid(RES)
    land = land_mask(grid)
    times = pd.date_range(START, END, freq="MS")
    nt, (H, W) = len(times), grid.shape
    rng = np.random.default_rng(0)
    t = decimal_year(times)
    lat2, lon2 = np.meshgrid(grid.lat, grid.lon, indexing="ij")
    # ENSO-like index: smooth red noise; the storage responds with pattern k (mm per K)
    x = np.convolve(rng.normal(0, 1, nt + 12), np.ones(6) / 3, mode="same")[6:-6]
    k = 20 * np.cos(np.deg2rad(lat2))
    truth = (30 * np.sin(2 * np.pi * t)[:, None, None] * np.sin(np.deg2rad(lat2))[None]
             + (-2.0 * (t - t.mean()))[:, None, None] + x[:, None, None] * k[None]
             + rng.normal(0, 3, (nt, H, W)))
    # fluxes that close the budget exactly: S = monthly mean of the storage accumulated from F
    end = np.zeros((nt, H, W))
    prev = np.zeros((H, W))
    for i in range(nt):
        end[i] = 2 * truth[i] - prev
        prev = end[i]
    flux = np.diff(np.concatenate([np.zeros((1, H, W)), end]), axis=0)  # mm/month
    days = times.days_in_month.to_numpy(float)[:, None, None]
    runoff = np.full((nt, H, W), 1.5)
    e_day = np.full((nt, H, W), -1.0)
    tp_day = flux / days + runoff - e_day
    truth = np.where(land[None], truth, np.nan)
    tw = out / "twin"
    tw.mkdir()
    xr.Dataset({"twsa": (("time", "lat", "lon"), truth.astype(np.float32), {"units": "mm"}),
                "runoff": (("time", "lat", "lon"), np.where(land[None], runoff, np.nan).astype(np.float32),
                           {"units": "mm day-1"})},
               coords={"time": times, "lat": grid.lat, "lon": grid.lon}).to_netcdf(tw / "truth_twsa.nc")
    # the parts of the truth no forcing explains (as the twin writes them): pumping and land ice
    tc = (t - t.mean())[:, None, None]
    depletion = np.where(land[None] & (np.abs(lat2) < 40)[None], -1.0 * tc, np.nan)
    ice = np.where(land[None] & (lat2 > 60)[None], -3.0 * tc, np.where(land[None], 0.0, np.nan))
    depletion = np.where(land[None], np.nan_to_num(depletion), np.nan)
    xr.Dataset({"twsa_forced": (("time", "lat", "lon"), (truth - depletion - ice).astype(np.float32)),
                "depletion": (("time", "lat", "lon"), depletion.astype(np.float32)),
                "ice": (("time", "lat", "lon"), ice.astype(np.float32))},
               coords={"time": times, "lat": grid.lat, "lon": grid.lon}).to_netcdf(tw / "truth_components.nc")
    skt = 290 + 3 * np.cos(2 * np.pi * t)[:, None, None] + np.zeros((nt, H, W))
    inbox = (np.abs(lat2) <= 5) & (lon2 >= -170) & (lon2 <= -120)
    skt = skt + x[:, None, None] * inbox[None]
    # GRACE targets from 2002-04; ERA5 tp, e (mm/day) and skt (K) as channels of the predictor cube
    grace = times >= "2002-04"
    tg = np.full((3, nt, H, W), np.nan, np.float32)
    for j in range(3):
        tg[j, grace] = (truth[grace] + rng.normal(0, 5, truth[grace].shape)).astype(np.float32)
    _write_cube(out / "cube", grid, times, {"tp": tp_day, "e": e_day, "skt": skt},
                {"tp": "mm day-1", "e": "mm day-1", "skt": "K"}, tg)
    # products: truth + noise (two centres only: the report must say the third is missing)
    pdir = out / "products"
    for j, c in enumerate(("jpl", "csr")):
        rec = truth + np.random.default_rng(10 + j).normal(0, 6, truth.shape)
        kw = dict(grid=grid, times=times, land_mask=land, cell_area=grid.cell_area(), attrs={"target_centre": c},
                  zarr_copy=False)
        write_twsa_product(pdir / product_name(c), rec, **kw)
        write_twsa_product(pdir / product_name(c, True), detrend_deseasonalize(rec, t), **kw)
    write_products_manifest(pdir)  # a finished publication: readers refuse a folder without it
    # external barystatic SLE (from the truth) and a published field
    gl = regional_series(truth, grid.cell_area(), {"g": region_masks(grid, land)["global_land"]}, times=times)
    pd.DataFrame({"time": times.strftime("%Y-%m-%d"), "sle_mm": budget.gt_to_sle_mm(gl["g_Gt"].values)}).to_csv(
        out / "sle.csv", index=False)
    xr.Dataset({"twsa": (("time", "lat", "lon"), (truth + rng.normal(0, 4, truth.shape)).astype(np.float32),
                         {"units": "cm"})},
               coords={"time": times, "lat": grid.lat, "lon": grid.lon}).to_netcdf(out / "published.nc")
    gauges = []
    for gid, (lo, la) in {"amazon_obidos": (-55.5, -1.9), "congo_kinshasa": (15.3, -4.3)}.items():
        q = 1000 + 50 * rng.normal(size=nt)
        gauges.append(pd.DataFrame({"gauge_id": gid, "lon": lo, "lat": la, "time": times.strftime("%Y-%m"),
                                    "discharge": q}))
    pd.concat(gauges).to_csv(out / "gauges.csv", index=False)
    return out


def _compose(overrides):
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        return compose(config_name="report", overrides=overrides)


def _check_md(md_path: Path) -> str:
    text = md_path.read_text()
    pngs = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", text)
    assert pngs, "report.md references no figure"
    for p in pngs:
        assert (md_path.parent / p).is_file(), f"{p} referenced but missing"
        assert (md_path.parent / p).stat().st_size > 5000
    assert "**Failed:**" not in text, text[text.find("**Failed:**") - 300: text.find("**Failed:**") + 600]
    return text


def test_report_end_to_end_twin(fake_run):
    cfg = _compose([f"paths.output_dir={fake_run}", "report.min_basin_cells=2",
                    f"report.external_sle={fake_run / 'sle.csv'}",
                    f"report.published.tws_field={fake_run / 'published.nc'}"])
    md_path = build_report(cfg)
    assert md_path == fake_run / "report" / "report.md"
    text = _check_md(md_path)
    for fig in ("maps_jpl.png", "maps_csr.png", "regional_series.png", "global_land_sle.png",
                "basin_balance_r.png", "discharge_twin_gauges.png", "enso_composite.png", "published_r.png"):
        assert f"({fig})" in text
    assert "no product for gsfc" in text  # absent inputs are named, not silent
    assert "grid 10.0 deg global (18x36) (cube " in text  # grid, land and ERA5 channels from the cube
    assert "twin gauges" in text and "SREX" in text
    nums = json.loads((md_path.parent / "numbers.json").read_text())
    assert all(v == "done" for v in nums["status"].values()), nums["status"]
    # land-ocean budget: products are truth + white noise -> r ~ 1 and a small trend error, printed in report.md
    r, err = nums["budget_jpl_r_truth"], nums["budget_jpl_trend_error_gt_yr"]
    assert r > 0.95 and abs(err) < 20
    assert f"| budget_jpl_r_truth | {r:.3f} |" in text
    assert f"| budget_jpl_trend_error_gt_yr | {err:.3f} |" in text
    # the truth storage closes the budget with the ERA5-like fluxes exactly (r = 1)
    assert nums["basin_balance_median_r_truth"] > 0.999
    # ENSO: truth composite is positive in the tropics (k > 0), products match its pattern
    enso_rows = {row["field"]: row for row in nums["enso"]}
    assert enso_rows["jpl"]["pattern r vs truth"] > 0.8
    assert enso_rows["truth"]["median regression (mm/K)"] > 5
    # attribution: products = truth + noise, so against the forced stores alone their trend error is the
    # unforced (pumping + ice) trend of the truth, which report.md states in its own table
    unf = nums["unforced_trend_global_land_gt_yr"]
    assert unf < -1.0
    assert nums["budget_jpl_trend_error_forced_gt_yr"] == pytest.approx(unf, rel=0.1)
    assert "What no forcing-driven reconstruction can see" in text and "twin truth, forced" in text
    # external SLE made from the truth: correlation ~ 1
    ext = [row for row in nums["mass_budget"] if row["reference"] == "sle.csv"]
    assert ext and ext[0]["r"] > 0.95
    assert not list(fake_run.glob("report.tmp-*"))  # atomic: no leftovers


def test_report_skips_missing_inputs_with_reason(fake_run, tmp_path):
    """Without truth and cube (targets, ERA5 predictors): sections are skipped, each with its reason; user gauges still work."""
    shutil.copytree(fake_run / "products", tmp_path / "products")
    cfg = _compose([f"paths.output_dir={tmp_path}", f"report.gauges={fake_run / 'gauges.csv'}"])
    text = _check_md(build_report(cfg))
    assert "no twin truth file" in text
    assert "no GRACE targets" in text
    assert "no predictor cube" in text  # ERA5 skt, tp, e come from the cube
    assert "(no cube)" in text  # the grid stored in the products
    assert "no published reconstruction given" in text
    assert "no report.external_sle CSV given" in text
    assert "discharge_gauges.png" in text
    nums = json.loads((tmp_path / "report" / "numbers.json").read_text())
    assert nums["status"]["5. Discharge check"] == "done"
    assert nums["status"]["6. El Niño composites"].startswith("skipped")


def test_report_refuses_without_products(tmp_path):
    cfg = _compose([f"paths.output_dir={tmp_path}"])
    with pytest.raises(FileNotFoundError, match="no product .*run infer.py first"):
        build_report(cfg)
