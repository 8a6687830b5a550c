"""Known-answer tests of the twin Earth on tiny grids and short periods."""

from __future__ import annotations

import glob
import json

import netCDF4
import numpy as np
import pytest
import xarray as xr

from gtws_dl.grid import Grid
from gtws_dl.twin import TwinConfig, TwinConfigError, generate
from gtws_dl.twin import grace as gr
from gtws_dl.twin import hydrology as hy
from gtws_dl.twin.climate import Climate
from gtws_dl.twin.writers import Era5Writer

GRID = Grid(10.0)
SHORT = {"start": "2000-01", "end": "2010-12", "progress": False}


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    out = tmp_path_factory.mktemp("twin")
    man = generate(out, GRID, **SHORT)
    return out, man


def test_config_errors():
    with pytest.raises(TwinConfigError, match="era5_layout must be 'new' or 'old'"):
        TwinConfig(era5_layout="grib")
    with pytest.raises(TwinConfigError, match="unknown twin option"):
        TwinConfig.from_mapping({"sead": 1})
    with pytest.raises(TwinConfigError, match="must contain the 2004-01..2009-12"):
        TwinConfig(start="2005-01", end="2010-12")
    with pytest.raises(TwinConfigError, match="before twin.start"):
        TwinConfig(start="2010-01", end="2001-12")


def test_mass_conservation_per_cell():
    rng = np.random.default_rng(0)
    n = 500
    frac = rng.dirichlet(np.ones(9), size=n).T
    p = hy.cell_params(frac, rng.uniform(0, 1, n), rng.uniform(-15, 28, n))
    state = hy.new_state(n)
    for _ in range(48):
        t_c = rng.uniform(-25, 30, n)
        tp, pet = rng.gamma(1.0, 80.0, n), rng.gamma(2.0, 40.0, n)
        s0 = hy.total(state).copy()
        fl = hy.step(state, p, tp, pet, t_c, 30.0)
        np.testing.assert_allclose(hy.total(state) - s0, tp - fl["et"] - fl["runoff"], atol=1e-9)
        assert (fl["et"] <= pet + 1e-9).all()
        assert all((v >= -1e-12).all() for v in state.values())


def test_snow_only_where_cold(twin):
    out, _ = twin
    sd = xr.open_dataset(out / "era5" / "data_stream-moda_stepType-avgua_2005.nc").sd
    jan, jul = sd.isel(valid_time=0), sd.isel(valid_time=6)
    tropics = jan.sel(latitude=slice(10, -10))
    assert float(np.nanmax(tropics)) == 0.0
    assert float(np.nanmax(jul.sel(latitude=slice(10, -10)))) == 0.0
    boreal = jan.sel(latitude=slice(70, 50)).values
    assert np.nanmean(boreal) > 0.02  # > 20 mm w.e. in January at 50-70 N


def test_truth_layout_and_baseline(twin):
    out, _ = twin
    ds = xr.open_dataset(out / "truth_twsa.nc")
    assert ds.twsa.dims == ("time", "lat", "lon") and ds.twsa.dtype == np.float32
    assert ds.twsa.attrs["units"] == "mm" and "runoff" in ds
    np.testing.assert_allclose(ds.lat, GRID.lat)
    np.testing.assert_allclose(ds.lon, GRID.lon)
    assert ds.time.values[0] == np.datetime64("2000-01-01")
    base = ds.twsa.sel(time=slice("2004-01", "2009-12")).mean("time")
    assert np.nanmax(np.abs(base.values)) < 1e-2
    ocean = ~np.isfinite(ds.twsa.isel(time=0).values)
    assert ocean.any() and (~ocean).any()
    comp = xr.open_dataset(out / "truth_components.nc")
    np.testing.assert_allclose(comp.twsa_forced + comp.depletion + comp.ice, ds.twsa, atol=1e-2)


def test_grace_months_and_values(twin):
    out, _ = twin
    expected = gr.available_months("2000-01", "2010-12")
    assert str(expected[0]) == "2002-04" and np.datetime64("2002-06") not in expected
    truth = xr.open_dataset(out / "truth_twsa.nc").twsa
    truth_months = truth.time.values.astype("datetime64[M]")
    w = gr.span_weights(expected, truth_months)
    ref = gr.smooth(np.tensordot(w, np.nan_to_num(truth.values), axes=(1, 0)), GRID, 300.0)
    for centre, pattern, noise in (("jpl", "GRCTellus.JPL.*.nc", 15), ("csr", "CSR_*.nc", 20), ("gsfc", "gsfc.*.nc", 18)):
        (path,) = glob.glob(str(out / "grace" / pattern))
        with netCDF4.Dataset(path) as ds:
            assert ds["time"].units == "days since 2002-01-01T00:00:00Z"
            assert ds["time_bounds"].shape == (len(expected), 2)
            t = netCDF4.num2date(ds["time"][:], ds["time"].units, only_use_python_datetimes=True,
                                 only_use_cftime_datetimes=False)
            months = np.array([np.datetime64(x.strftime("%Y-%m")) for x in t])
            np.testing.assert_array_equal(months, expected)
            lon = ds["lon"][:]
            x = np.asarray(ds["lwe_thickness"][:], dtype=float)
            if ds["lwe_thickness"].dimensions[0] != "time":
                x = np.moveaxis(x, -1, 0)
            if centre == "jpl":
                assert "2002-06" in ds.months_missing and ds["lwe_thickness"].dtype == np.float64
            if centre in ("jpl", "csr"):
                assert lon.min() >= 0 and lon.max() > 180
            else:
                assert lon.min() < 0
        lon = np.where(lon > 180, lon - 360, lon)
        x = x[..., np.argsort(lon)] * 10.0  # cm -> mm, lon -> -180..180
        diff = x - ref
        diff -= diff.mean(axis=0)
        rms = np.sqrt((diff**2).mean())
        assert 0.4 * noise < rms < 2.0 * noise, (centre, rms)
        assert np.corrcoef(x.ravel(), ref.ravel())[0, 1] > 0.6


def test_era5_new_layout(twin):
    out, man = twin
    ds = xr.open_dataset(out / "era5" / "data_stream-moda_stepType-avgad_2010.nc")
    assert set(ds.data_vars) == {"tp", "e", "pev", "ssrd", "strd"}
    assert "valid_time" in ds.dims and ds.number.values == 0
    assert list(ds.expver.values[-4:]) == ["0001", "0005", "0005", "0005"]
    assert ds.latitude.values[0] == 90 and ds.latitude.values[-1] == -90
    assert ds.longitude.values[0] == 0 and ds.longitude.values.max() < 360
    assert float(ds.pev.max()) <= 0 and float(ds.tp.min()) >= 0
    assert ds.ssrd.attrs["units"] == "J m**-2" and 5e6 < float(ds.ssrd.mean()) < 3e7
    ins = xr.open_dataset(out / "era5" / "data_stream-moda_stepType-avgua_2010.nc")
    assert (ins.d2m <= ins.t2m + 1e-3).all()
    with netCDF4.Dataset(out / "era5" / "data_stream-moda_stepType-avgua_2010.nc") as nc:
        assert nc["valid_time"].units == "seconds since 1970-01-01" and nc["valid_time"].dtype == np.int64


def test_era5_old_layout_packing(tmp_path):
    grid = Grid(30.0)
    times = np.array(["2024-10-01", "2024-11-01", "2024-12-01"], dtype="datetime64[ns]")
    rng = np.random.default_rng(1)
    fields = {k: rng.uniform(200, 300, (3, *grid.shape)).astype(np.float32) for k in
              ("t2m", "d2m", "skt", "sp", "u10", "v10", "swvl1", "sd", "tp", "e", "pev", "ssrd", "strd")}
    fields["swvl1"][:, -1, :] = np.nan  # northernmost row: the 90 N nodes see only it
    w = Era5Writer(tmp_path, grid, "old", True, np.datetime64("2024-12", "M"), times)
    w.add_year(times, fields)
    (path,) = w.close()
    with netCDF4.Dataset(path) as nc:
        assert nc.data_model == "NETCDF3_64BIT_OFFSET"
        v = nc["t2m"]
        assert v.dtype == np.int16 and v._FillValue == -32767 and v.missing_value == -32767
        assert nc["time"].dtype == np.int32 and nc["time"].units.startswith("hours since 1900-01-01")
        assert list(nc["expver"][:]) == [1, 5] and v.dimensions == ("time", "expver", "latitude", "longitude")
    ds = xr.open_dataset(path)
    merged = ds.t2m.sel(expver=1).fillna(ds.t2m.sel(expver=5))
    expect = w.nodes(fields["t2m"])
    scale = float(ds.t2m.encoding["scale_factor"])
    np.testing.assert_allclose(merged.values, expect, atol=scale * 0.51 + 1e-4)
    assert np.isnan(ds.t2m.sel(expver=5).values[0]).all()  # ERA5 months have fill under expver 5
    assert np.isnan(ds.swvl1.sel(expver=1).values[0, 0]).all()  # NaN -> fill -32767 -> NaN


def test_old_layout_end_to_end_and_whole_record(tmp_path):
    out = tmp_path / "old"
    generate(out, Grid(30.0), era5_layout="old", era5_per_year=False, **SHORT)
    (path,) = glob.glob(str(out / "era5" / "*.nc"))
    ds = xr.open_dataset(path)
    assert ds.sizes["time"] == 132 and "expver" in ds.dims


def test_lai_sif_start(tmp_path):
    out = tmp_path / "veg"
    generate(out, Grid(30.0), start="1980-01", end="2010-12", progress=False)
    lai = xr.open_dataset(out / "lai.nc").LAI
    assert lai.time.values[0] == np.datetime64("1982-01-01")
    assert lai.sel(time=slice(None, "1981-12")).size == 0
    assert float(lai.max()) > 1.0 and float(lai.min()) >= 0
    sif = xr.open_dataset(out / "sif.nc").SIF
    assert sif.time.values[0] == np.datetime64("2001-01-01")
    lc = xr.open_dataset(out / "landcover.nc").land_cover_fraction
    assert list(lc["class"].values) == list(hy.CLASSES)
    np.testing.assert_allclose(lc.sum("class"), 1.0, atol=1e-5)
    crop = lc.sel({"class": "cropland"}).sum(("lat", "lon"))
    assert float(crop[-1]) > float(crop[0])


def test_determinism_and_skip(tmp_path, twin):
    out, man = twin
    out2 = tmp_path / "again"
    man2 = generate(out2, GRID, **SHORT)
    a = xr.open_dataset(out / "truth_twsa.nc").twsa.values
    b = xr.open_dataset(out2 / "truth_twsa.nc").twsa.values
    np.testing.assert_array_equal(a, b)
    assert man2["fingerprint"] == man["fingerprint"]
    again = generate(out2, GRID, **SHORT)  # complete: skipped, same manifest back
    assert again["created"] == man2["created"]
    other = generate(tmp_path / "seed1", GRID, seed=1, **SHORT)
    c = xr.open_dataset(tmp_path / "seed1" / "truth_twsa.nc").twsa.values
    assert other["fingerprint"] != man["fingerprint"] and not np.allclose(np.nan_to_num(a), np.nan_to_num(c))
    assert json.loads((out / "twin_manifest.json").read_text())["seed"] == 0


def test_hotspot_and_ice_trends():
    t = np.arange(1950, 2025, 1 / 12)
    w = [np.ones((1, 1))]
    h = [{"rate_mm_yr": 20.0, "onset": 1970, "ramp_yr": 20}]
    d = hy.depletion_mm(t, w, h)[:, 0, 0]
    late = t > 2000
    assert np.polyfit(t[late], d[late], 1)[0] == pytest.approx(-20.0, rel=0.05)
    assert abs(d[t < 1969]).max() == 0
    g = {"rate_gt_yr": -260.0, "ref_year": 2010.0, "onset": 1990.0, "f0": 0.1}
    assert hy.ice_rate_gt_yr(np.array([2010.0]), g)[0] == pytest.approx(-260.0)
    assert hy.ice_rate_gt_yr(np.array([2020.0]), g)[0] < hy.ice_rate_gt_yr(np.array([2000.0]), g)[0] < 0


def test_hotspot_trend_in_truth(twin):
    out, _ = twin
    comp = xr.open_dataset(out / "truth_components.nc")
    dep = comp.depletion.sel(lat=25, lon=75, method="nearest")  # NW India cell
    slope = np.polyfit(np.arange(dep.size) / 12, dep.values, 1)[0]
    assert slope < -1.0


def test_climate_physics():
    grid = Grid(10.0)
    c = Climate(grid, np.ones(grid.shape, np.float32), seed=3)
    f = c.year(2000, np.arange(1, 13))
    assert all(v.dtype == np.float32 for k, v in f.items() if k not in ("enso", "warming"))
    assert (f["d2m"] <= f["t2m"]).all()
    lat = grid.lat
    nh, sh = lat > 30, lat < -30
    t = f["t2m"].mean(axis=2)
    assert t[6, nh].mean() > t[0, nh].mean() + 10 and t[0, sh].mean() > t[6, sh].mean()
    assert (f["pev"] >= 0).all() and (f["tp"] > 0).all()


def test_hydra_command_composes(tmp_path):
    from hydra import compose, initialize_config_dir

    from gtws_dl.config import conf_dir
    from gtws_dl.twin.__main__ import run

    with initialize_config_dir(version_base="1.3", config_dir=conf_dir()):
        cfg = compose("twin", overrides=[f"paths.output_dir={tmp_path}", "grid.res=30", "twin.start=2000-01",
                                         "twin.end=2010-12", "twin.progress=false"])
    man = run(cfg)
    assert (tmp_path / "twin" / "twin_manifest.json").exists() and man["grid"]["res"] == 30.0
    with initialize_config_dir(version_base="1.3", config_dir=conf_dir()):
        bad = compose("twin", overrides=["twin.era5_layout=grib"])
    with pytest.raises(TwinConfigError, match="era5_layout"):
        run(bad)


def test_memory_budget_changes_no_number(tmp_path, twin):
    """``twin.memory_gb`` only sizes the passes over the written record (blocks of months, bands of rows): a tiny
    budget (one month per block, one row per band) writes the same files and the same fingerprint."""
    out, man = twin
    small = generate(tmp_path / "small", GRID, memory_gb=1e-6, **SHORT)
    assert small["fingerprint"] == man["fingerprint"]
    files = sorted(p.relative_to(out) for p in out.rglob("*.nc"))
    assert files and files == sorted(p.relative_to(tmp_path / "small") for p in (tmp_path / "small").rglob("*.nc"))
    for rel in files:
        with netCDF4.Dataset(out / rel) as a, netCDF4.Dataset(tmp_path / "small" / rel) as b:
            for name, v in a.variables.items():
                x, y = v[:], b[name][:]
                if x.dtype.kind == "f":
                    np.testing.assert_array_equal(np.ma.filled(x, np.nan), np.ma.filled(y, np.nan), err_msg=f"{rel}:{name}")
                else:
                    assert np.array_equal(x, y), f"{rel}:{name}"
    np.testing.assert_allclose(small["diagnostics"]["full"]["explained_land"], man["diagnostics"]["full"]["explained_land"],
                               rtol=1e-12)


@pytest.mark.parametrize("centre,time_last", [("jpl", False), ("csr", False), ("gsfc", True)])
def test_mascon_writer_streams_blocks_to_the_whole_record_file(tmp_path, centre, time_last):
    """Months written in blocks, the 2004–2009 mean removed at close: the same numbers as removing the mean from
    the whole record in the file's dtype, in the centre's layout (JPL/CSR lon 0..360, GSFC (lat, lon, time))."""
    from gtws_dl.twin.writers import MasconWriter

    grid = Grid(30.0)
    gm = gr.available_months("2002-01", "2011-12")
    tmid, tb = gr.time_coords(gm)
    dec = 2002.0 + tmid / 365.25
    in_base = (dec >= 2004.0) & (dec < 2010.0)
    rng = np.random.default_rng(3)
    raw = rng.normal(5.0, 20.0, (len(gm), *grid.shape))
    w = MasconWriter(tmp_path, centre, grid, gm, tmid, tb, [], in_base, time_last=time_last)
    for g0 in range(0, len(gm), 12):
        w.write(g0, raw[g0:g0 + 12])
    path = w.close()
    dtype = np.float64 if centre == "jpl" else np.float32
    want = raw.astype(dtype)
    want = want - want[in_base].mean(axis=0, dtype=np.float64).astype(dtype)
    with netCDF4.Dataset(path) as ds:
        v = ds["lwe_thickness"]
        assert v.dimensions == (("lat", "lon", "time") if time_last else ("time", "lat", "lon"))
        got = np.asarray(v[:])
        lon = ds["lon"][:]
    if time_last:
        got = np.moveaxis(got, -1, 0)
    got = got[..., np.argsort(np.argsort(np.mod(grid.lon, 360.0), kind="stable"))] if centre != "gsfc" else got
    assert (np.all(np.diff(lon) > 0) and lon.min() >= 0) if centre != "gsfc" else lon.min() < 0
    np.testing.assert_array_equal(got, want)
    assert not list(tmp_path.glob("*.tmp-*"))  # the file appears whole, under its name
    (tmp_path / "again").mkdir()
    again = MasconWriter(tmp_path / "again", centre, grid, gm, tmid, tb, [], in_base)
    with pytest.raises(ValueError, match="in order"):
        again.write(12, raw[12:24])
    again.ds.close()
