"""Storage change the forcing cannot explain: residual trends found where they are real, added as documented."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from gtws_dl.post import unforced
from gtws_dl.seasonal import decimal_year

TIMES = pd.date_range("2002-04", "2022-12", freq="MS")
T = decimal_year(TIMES)
FIT = (float(T[0]), float(T[-1]))


def _series(rng, slope_mm_yr: float, noise_mm: float = 15.0) -> np.ndarray:
    seas = 50 * np.cos(2 * np.pi * (TIMES.month.values - 4) / 12)
    red = np.zeros(len(T))  # AR(1) interannual noise, like a model's error of the forced variability
    for i in range(1, len(T)):
        red[i] = 0.9 * red[i - 1] + rng.normal(0, noise_mm * np.sqrt(1 - 0.81))
    return seas + slope_mm_yr * (T - T.mean()) + red


def test_residual_trend_keeps_ice_loss_and_drops_noise():
    rng = np.random.default_rng(0)
    target = np.stack([_series(rng, -100.0), _series(rng, 0.0), _series(rng, -30.0)], 1)[:, :, None]
    recon = np.stack([_series(rng, 0.0, 0.0)] * 3, 1)[:, :, None]  # the network: seasonal cycle, no trend
    slope = unforced.residual_trend(target, recon, T, FIT)[:, 0]
    assert slope[0] == pytest.approx(-100.0, rel=0.05) and slope[2] == pytest.approx(-30.0, rel=0.15)
    assert slope[1] == 0.0  # noise only: nothing is extrapolated
    # cells with too few months get none
    short = unforced.residual_trend(target[:20], recon[:20], T[:20], (float(T[0]), float(T[19])))
    assert (short == 0).all()


def test_effective_time_per_mode():
    t = np.array([1950.0, 1990.0, 1996.0, 2002.0, 2010.0])
    np.testing.assert_allclose(unforced.effective_time(t, 2002.0, "off"), 0.0)
    np.testing.assert_allclose(unforced.effective_time(t, 2002.0, "none"), [0, 0, 0, 0, 8])
    back = unforced.effective_time(t, 2002.0, "grace_trend", onset=1990.0)
    # the rate tapers linearly from 1 at 2002 to 0 at 1990: a loss of half the 12 years' worth, flat before
    np.testing.assert_allclose(back, [-6.0, -6.0, -6.0 + 36 / 24, 0.0, 8.0])
    with pytest.raises(ValueError, match="products.unforced"):
        unforced.effective_time(t, 2002.0, "linear")


def test_products_match_a_grace_trend_the_network_missed(synthetic_cube, tmp_path):
    """A strong trend in the targets that the reconstruction lacks is in the product with products.unforced=none,
    and the products say so; with off it is not."""
    import shutil

    import zarr

    from gtws_dl.cube.store import open_cube
    from gtws_dl.evaluate.trends import trend_map
    from gtws_dl.post.publish import product_name, publish
    from gtws_dl.recon_store import write_reconstruction

    cube = tmp_path / "cube"
    shutil.copytree(synthetic_cube["dir"], cube)
    manifest, pred, _ = open_cube(cube)
    times = pd.date_range(manifest["time"]["start"], periods=manifest["time"]["n"], freq="MS")
    land = np.asarray(pred["land_mask"][:], bool)
    t = decimal_year(times)
    ramp = np.where(times >= "2002-04", -20.0 * (t - 2002.25), 0.0).astype(np.float32)  # -20 mm/yr in one cell
    i, j = np.argwhere(land)[0]
    targ = zarr.open_group(str(cube / "targets.zarr"), mode="r+")["twsa"]
    k = 1  # csr
    col = np.asarray(targ[k, :, i, j])
    targ[k, :, i, j] = col + ramp
    recon = np.where(land, synthetic_cube["truth"], np.nan)[None].astype(np.float32)
    g = synthetic_cube["grid"]
    store = write_reconstruction(tmp_path / "recon.zarr", recon, targets=["csr"], times=times, lat=g.lat, lon=g.lon)
    trends = {}
    for mode in ("off", "none"):
        out = tmp_path / mode
        publish(store, out, grid=g, cube_dir=cube, channels=manifest["channels"], train_period=["2002-04", "2010-12"],
                products={"zarr_copy": False, "unforced": mode})
        ds = xr.open_dataset(out / product_name("csr"))
        assert ds.attrs["unforced"].startswith(mode)
        grace = times >= "2002-04"
        trends[mode] = trend_map(ds["twsa"].values[grace], times[grace])
        ds.close()
    assert trends["off"][i, j] == pytest.approx(0.0, abs=1.0)
    assert trends["none"][i, j] == pytest.approx(-20.0, abs=1.0)
    other = land.copy()
    other[i, j] = False  # targets = truth + 2 mm noise elsewhere: a residual trend there is a false alarm
    moved = np.abs(trends["none"][other] - trends["off"][other])
    assert (moved > 1e-3).mean() <= 0.05 and moved.max() < 1.0  # z = 2: a few noise cells, by < 1 mm/yr


def _publish_modes(synthetic_cube, tmp_path, products: dict, modes=("none", "external")):
    """Publish the synthetic truth as a reconstruction, its csr targets with a GRACE-era loss in two cells of one
    continent (−20 and −10 mm/yr), under each ``products.unforced`` mode: {mode: csr twsa (time, lat, lon)}."""
    import shutil

    import zarr

    from gtws_dl.cube.store import open_cube
    from gtws_dl.post.publish import product_name, publish
    from gtws_dl.post.regions import region_masks
    from gtws_dl.recon_store import write_reconstruction

    cube = tmp_path / "cube"
    if not cube.exists():
        shutil.copytree(synthetic_cube["dir"], cube)
    manifest, pred, _ = open_cube(cube)
    times = pd.date_range(manifest["time"]["start"], periods=manifest["time"]["n"], freq="MS")
    land = np.asarray(pred["land_mask"][:], bool)
    g = synthetic_cube["grid"]
    africa = region_masks(g, land)["africa"]
    cells = [tuple(c) for c in np.argwhere(africa)[:2]]
    t = decimal_year(times)
    targ = zarr.open_group(str(cube / "targets.zarr"), mode="r+")["twsa"]
    for (i, j), rate in zip(cells, (-20.0, -10.0), strict=True):
        ramp = np.where(times >= "2002-04", rate * (t - 2002.25), 0.0).astype(np.float32)
        targ[1, :, i, j] = np.asarray(synthetic_cube["truth"][:, i, j]) + ramp
    recon = np.where(land, synthetic_cube["truth"], np.nan)[None].astype(np.float32)
    store = write_reconstruction(tmp_path / "recon.zarr", recon, targets=["csr"], times=times, lat=g.lat, lon=g.lon)
    out = {}
    for mode in modes:
        d = tmp_path / f"products_{mode}"
        publish(store, d, grid=g, cube_dir=cube, channels=manifest["channels"], train_period=["2002-04", "2010-12"],
                products={"zarr_copy": False, "unforced": mode, **products})
        with xr.open_dataset(d / product_name("csr")) as ds:
            out[mode] = ds["twsa"].values.astype(np.float64)
            out[mode + "_attrs"] = dict(ds.attrs)
            out[mode + "_rate"] = ds["unforced_trend"].values
    return out, times, t, cells, africa, g


def test_external_series_sets_the_continents_change_before_grace(synthetic_cube, tmp_path):
    """unforced=external with a continent's mass series: before the first training month the products' mass
    change over the continent is the series' (to 0.1 %), shared by the cells in proportion to their GRACE-era
    residual trends; from the first training month on it equals unforced=none."""
    years = np.arange(1990.0, 2013.0)
    mass = np.where(years > 1998.0, -50.0 * (years - 1998.0), 0.0)  # Gt: a loss from 1998 on
    csv = tmp_path / "ice.csv"
    pd.DataFrame({"time": years, "Africa (Gt)": mass}).to_csv(csv, index=False)
    out, times, t, cells, africa, g = _publish_modes(synthetic_cube, tmp_path, {"unforced_series": str(csv)})
    diff = np.nan_to_num(out["external"] - out["none"])
    t_lo = decimal_year(pd.DatetimeIndex(["2002-04"]))[0]
    before = t < t_lo - 1e-9
    assert np.abs(diff[~before]).max() < 1e-3  # the GRACE era is the residual trend's, as with none
    area = g.cell_area()
    got_gt = (diff * area).sum(axis=(1, 2)) / 1e12
    want_gt = np.interp(t, years, mass) - np.interp(t_lo, years, mass)
    np.testing.assert_allclose(got_gt[before], want_gt[before], rtol=1e-3, atol=0.05)
    land = np.isfinite(out["none"][0])
    ext = unforced.External.from_config({"unforced_series": str(csv)})
    masks = {"africa": africa, "land": land}  # the report's regional sums of the same choice
    regional = ext.regional(out["external_rate"], g, land, area, masks, t, t_lo)
    np.testing.assert_allclose(regional["africa"], got_gt, atol=0.05)
    np.testing.assert_allclose(regional["land"], got_gt, atol=0.05)
    (i1, j1), (i2, j2) = cells
    share = diff[0, i1, j1] * area[i1, j1] / (diff[0, i2, j2] * area[i2, j2])
    assert share == pytest.approx(2.0, rel=0.02)  # −20 vs −10 mm/yr
    others = africa.copy()
    others[i1, j1] = others[i2, j2] = False
    assert np.abs(diff[:, others]).max() < 1e-3
    assert "external" in out["external_attrs"]["unforced"] and out["external_attrs"]["unforced_series_file"] == str(csv)


def test_external_field_is_regridded_and_its_change_added_before_grace(synthetic_cube, tmp_path):
    """A gridded depletion estimate on a coarser grid (lat descending, lon 0..360), in cm, at yearly steps, NaN
    outside its region: its change from the first GRACE month is added to the land cells it covers, nothing
    elsewhere."""
    lat, lon = np.arange(80.0, -90.0, -20.0), np.arange(10.0, 360.0, 20.0)  # lat descending, lon 0..360
    years = pd.date_range("1990-07-01", "2012-07-01", freq="12MS")
    yrs = decimal_year(years)
    inside = ((lat[:, None] >= 0) & (lat[:, None] <= 60)) & ((lon[None] >= 0) & (lon[None] <= 120))
    vals = np.where(inside[None], -1.0 * (yrs[:, None, None] - 1990.0), np.nan).astype(np.float32)  # cm
    nc = tmp_path / "depletion.nc"
    xr.Dataset({"depletion": (("time", "lat", "lon"), vals, {"units": "cm"})},
               coords={"time": years, "lat": lat, "lon": lon}).to_netcdf(nc)
    out, times, t, _, _, g = _publish_modes(synthetic_cube, tmp_path, {"unforced_field": str(nc)})
    diff = out["external"] - out["none"]
    t_lo = decimal_year(pd.DatetimeIndex(["2002-04"]))[0]
    before = t < t_lo - 1e-9
    land = np.isfinite(out["none"][0])
    box = ((g.lat[:, None] > -10) & (g.lat[:, None] < 70)) & ((g.lon[None] > -10) & (g.lon[None] < 130)) & land
    core = ((g.lat[:, None] > 0) & (g.lat[:, None] < 60)) & ((g.lon[None] > 0) & (g.lon[None] < 120)) & land
    want = -10.0 * (np.clip(t, yrs[0], None) - t_lo)  # mm: −1 cm/yr, held before the field's first step
    np.testing.assert_allclose(diff[before][:, core], np.broadcast_to(want[before][:, None], (before.sum(), core.sum())),
                               atol=0.05)
    assert np.abs(diff[:, land & ~box]).max() < 1e-3
    assert np.abs(diff[~before][:, land]).max() < 1e-3
    area = g.cell_area()
    ext = unforced.External.from_config({"unforced_field": str(nc)})
    regional = ext.regional(out["external_rate"], g, land, area, {"land": land}, t, t_lo, band_bytes=4096)
    np.testing.assert_allclose(regional["land"], (np.nan_to_num(diff) * area).sum(axis=(1, 2)) / 1e12, rtol=1e-4,
                               atol=1e-3)


def test_external_inputs_refused_with_the_file_and_column(tmp_path):
    from gtws_dl.io.errors import InputFileError

    with pytest.raises(ValueError, match="unforced_series"):
        unforced.External.from_config({"unforced": "external"})
    bad = tmp_path / "sle.csv"
    pd.DataFrame({"time": [2000.0, 2001.0], "greenland (mm)": [0.0, -1.0]}).to_csv(bad, index=False)
    with pytest.raises(InputFileError, match=r"sle\.csv.*greenland \(mm\).*Gt"):
        unforced.External.from_config({"unforced_series": str(bad)})
    bad.write_text("time,atlantis\n2000,0\n2001,-3\n")
    with pytest.raises(InputFileError, match=r"atlantis.*continents"):
        unforced.External.from_config({"unforced_series": str(bad)})
    bad.write_text("time,greenland\n2000,0\n2001,\n")
    with pytest.raises(InputFileError, match=r"greenland.*row 3"):
        unforced.External.from_config({"unforced_series": str(bad)})
    bad.write_text("time,greenland\n2000,0\n2001,-3e9\n")  # kg, not Gt
    with pytest.raises(InputFileError, match=r"kg or tonnes"):
        unforced.External.from_config({"unforced_series": str(bad)})
    bad.write_text("time,greenland\n1990,0\n1995,-30\n")  # ends 7 years before the first GRACE month
    ext = unforced.External.from_config({"unforced_series": str(bad)})
    with pytest.raises(InputFileError, match=r"ends at 1995.00.*2002-04"):
        ext.check_reaches("2002-04")
    bad.write_text("time,greenland\n2003-01,0\n2010-01,-30\n")  # starts after it: no change before GRACE
    with pytest.raises(InputFileError, match=r"starts at 2003.04, after 2002-04"):
        unforced.External.from_config({"unforced_series": str(bad)}).check_reaches("2002-04")
    nc = tmp_path / "f.nc"
    xr.Dataset({"depletion": (("time", "lat", "lon"), np.zeros((2, 2, 2), np.float32))},
               coords={"time": pd.date_range("2000-01", periods=2, freq="MS"), "lat": [0.0, 10.0],
                       "lon": [0.0, 10.0]}).to_netcdf(nc)
    with pytest.raises(InputFileError, match=r"f\.nc.*depletion.*units"):
        unforced.External.from_config({"unforced_field": str(nc)})
    rate = tmp_path / "rate.nc"
    xr.Dataset({"depletion": (("time", "lat", "lon"), np.ones((2, 2, 2), np.float32), {"units": "mm yr-1"})},
               coords={"time": pd.date_range("2000-01", periods=2, freq="YS"), "lat": [0.0, 10.0],
                       "lon": [0.0, 10.0]}).to_netcdf(rate)
    with pytest.raises(InputFileError, match=r"rate\.nc.*a rate, units 'mm yr-1'.*integrate"):
        unforced.External.from_config({"unforced_field": str(rate)})


def test_external_field_of_a_region_reaches_only_its_latitudes(tmp_path):
    """A field covering 20-60 N only: bands outside it get nothing (no crash on zero or one source row), bands
    inside get its change from the first GRACE month."""
    from gtws_dl.grid import Grid

    lat, lon = np.arange(21.0, 60.0, 2.0), np.arange(61.0, 120.0, 2.0)
    years = pd.date_range("1990-07-01", "2012-07-01", freq="12MS")
    vals = (decimal_year(years) - 1990.0)[:, None, None] * np.ones((1, lat.size, lon.size))
    nc = tmp_path / "regional.nc"
    xr.Dataset({"storage": (("time", "lat", "lon"), vals.astype(np.float32), {"units": "mm"})},
               coords={"time": years, "lat": lat, "lon": lon}).to_netcdf(nc)
    ext = unforced.External.from_config({"unforced_field": str(nc)})
    g, t = Grid(10.0), np.array([1995.54, 2000.54])
    for row, want, cells in ((0, 0.0, 0), (10, 0.0, 0), (11, -7.0, 6), (14, -7.0, 6), (15, 0.0, 0)):
        out = ext.field_band(g.rows(row, row + 1), t, 2002.54)
        assert out[0].min() == pytest.approx(want, abs=1e-3) and (out[0] != 0).sum() == cells, row


def test_twin_external_estimates_tool_writes_files_the_readers_take(tmp_path):
    """tools/twin_external_estimates.py: the twin's ice-sheet mass as a CSV and its other unforced storage as a
    coarser NetCDF field, each within its drawn error factor of the truth, readable by unforced=external."""
    import subprocess
    import sys
    from pathlib import Path

    import netCDF4

    from gtws_dl.grid import Grid
    from gtws_dl.post.regions import region_masks
    from gtws_dl.twin import generate

    grid = Grid(10.0)
    generate(tmp_path / "twin", grid, start="1985-01", end="2010-12", progress=False, era5_per_year=False)
    tool = Path(__file__).resolve().parents[1] / "tools" / "twin_external_estimates.py"
    run = subprocess.run([sys.executable, str(tool), str(tmp_path / "twin"), str(tmp_path / "ext")],
                         capture_output=True, text=True, check=True)
    ext = unforced.External.from_config({"unforced_series": str(tmp_path / "ext" / "ice_sheets_gt.csv"),
                                         "unforced_field": str(tmp_path / "ext" / "unforced_storage.nc")})
    assert list(ext.series.columns) == ["greenland", "antarctica"] and ext.field.sizes["lat"] == grid.nlat // 3
    factor = float(run.stdout.split("'greenland': ")[1].split(",")[0])
    with netCDF4.Dataset(tmp_path / "twin" / "truth_components.nc") as nc:
        ice = np.asarray(nc["ice"][:], np.float64)
    from gtws_dl.landmask import land_mask

    gl = region_masks(grid, land_mask(grid))["greenland"]
    true_gt = (np.nan_to_num(ice) * grid.cell_area())[:, gl].sum(1) / 1e12
    change = ext.series["greenland"].iloc[-1] - ext.series["greenland"].iloc[0]
    true_change = true_gt[-12:].mean() - true_gt[:12].mean()  # the first and last years' means
    assert true_change < -100 and change == pytest.approx(factor * true_change, rel=0.01)
