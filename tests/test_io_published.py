"""Published reconstructions (GTWS-MLrec, GRACE-REC, any CF TWS field) and download request building."""

from __future__ import annotations

import sys
import types
from datetime import datetime

import netCDF4
import numpy as np
import pytest

from gtws_dl.io import download
from gtws_dl.io.errors import InputFileError
from gtws_dl.io.published import open_grace_rec, open_gtws_mlrec, open_tws_field


def write_gtws_mlrec(path, nt=2, nlat=721, nlon=1440):
    """Published layout: TWSA(z, y, x) without coordinate variables, plus an unused zz dim."""
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("x", nlon)
        nc.createDimension("y", nlat)
        nc.createDimension("z", nt)
        nc.createDimension("zz", 1)
        x = nc.createVariable("TWSA", "f4", ("z", "y", "x"), zlib=True, complevel=1)
        lat = np.linspace(90, -90, nlat)
        lon = np.arange(nlon) * 0.25
        x[:] = np.arange(nt)[:, None, None] * 100 + lat[None, :, None] + lon[None, None, :] / 1000
    return path


def test_gtws_mlrec_coordinates_rebuilt(tmp_path):
    da = open_gtws_mlrec(write_gtws_mlrec(tmp_path / "JPL-based GTWS-MLrec TWS.nc"))
    assert da.shape == (2, 721, 1440) and da.attrs["units"] == "mm"
    assert da.lat.values[0] == -90 and da.lon.values[0] == -180 and da.lon.values[-1] == 179.75
    assert str(da.time.values[1])[:7] == "1940-02"
    v = float(da.sel(time="1940-02-01", lat=30.0, lon=-90.0).values)
    assert v == pytest.approx(100 + 30 + 270 / 1000, rel=1e-6)


def test_gtws_mlrec_wrong_shape(tmp_path):
    p = write_gtws_mlrec(tmp_path / "small.nc", nlat=10, nlon=20)
    with pytest.raises(InputFileError, match=r"small\.nc.*'TWSA'.*lat 721.*lon 1440.*found dims"):
        open_gtws_mlrec(p)


def write_cf(path, var, units, *, extra=None, lat=None, lon=None, nt=3, start=datetime(1979, 1, 15)):
    lat = np.arange(-88.75, 90, 2.5) if lat is None else lat
    lon = np.arange(-178.75, 180, 2.5) if lon is None else lon
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("time", nt)
        nc.createDimension("lat", len(lat))
        nc.createDimension("lon", len(lon))
        t = nc.createVariable("time", "f8", ("time",))
        t.units, t.calendar = "days since 1901-01-01", "standard"
        t[:] = [
            (
                datetime(start.year + (start.month - 1 + i) // 12, (start.month - 1 + i) % 12 + 1, 15)
                - datetime(1901, 1, 1)
            ).days
            for i in range(nt)
        ]
        nc.createVariable("lat", "f4", ("lat",))[:] = lat
        nc.createVariable("lon", "f4", ("lon",))[:] = lon
        for name, u, val in [(var, units, 1.0), *(extra or [])]:
            x = nc.createVariable(name, "f4", ("time", "lat", "lon"), fill_value=np.float32(-32768))
            if u is not None:
                x.units = u
            x[:] = val
    return path


def test_grace_rec_deseasonalised_and_full(tmp_path):
    p = write_cf(
        tmp_path / "GRACE_REC_v03_JPL_ERA5_monthly_ensemble_mean.nc",
        "rec_ensemble_mean",
        "mm",
        extra=[("rec_seasonal_cycle", "mm", 2.0), ("rec_ensemble_p05", "mm", 0.0)],
        lat=np.arange(89.75, -90, -0.5)[:20],
        lon=np.arange(0.25, 360, 0.5)[:30],
    )
    d = open_grace_rec(p)
    assert d.time.values[0] == np.datetime64("1979-01-01") and np.all(np.diff(d.lat) > 0)
    np.testing.assert_allclose(d.values, 1.0)
    np.testing.assert_allclose(open_grace_rec(p, full=True).values, 3.0)


@pytest.mark.parametrize(("units", "factor"), [("mm", 1), ("cm", 10), ("m", 1000), ("kg m-2", 1)])
def test_cf_field_units_to_mm(tmp_path, units, factor):
    da = open_tws_field(write_cf(tmp_path / "tws.nc", "tws", units))
    np.testing.assert_allclose(da.values, factor)
    assert da.attrs["units"] == "mm" and da.dims == ("time", "lat", "lon")


def test_cf_field_bad_units_and_missing_variable(tmp_path):
    with pytest.raises(InputFileError, match=r"tws\.nc.*'tws'.*found 'inches'"):
        open_tws_field(write_cf(tmp_path / "tws.nc", "tws", "inches"))
    with pytest.raises(InputFileError, match=r"n\.nc.*'twsa'.*missing.*Available variables: \['other'\]"):
        open_tws_field(write_cf(tmp_path / "n.nc", "other", "mm"), "twsa")


# ---------------------------------------------------------------- download requests
def test_era5_request_matches_cds_syntax():
    name, req = download.era5_request([1941, 1940], [1, 2, 12], area=[60, -10, 35, 30])
    assert name == "reanalysis-era5-single-levels-monthly-means"
    assert req["product_type"] == ["monthly_averaged_reanalysis"]
    assert req["year"] == ["1940", "1941"] and req["month"] == ["01", "02", "12"]
    assert len(req["variable"]) == 13 and "2m_temperature" in req["variable"]
    assert "volumetric_soil_water_layer_1" in req["variable"] and "snow_depth" in req["variable"]
    assert req["data_format"] == "netcdf" and req["download_format"] == "unarchived"
    assert req["area"] == [60.0, -10.0, 35.0, 30.0]
    with pytest.raises(ValueError, match="North, West, South, East"):
        download.era5_request([2000], area=[10, 0, 20, 5])
    with pytest.raises(ValueError, match="unknown ERA5 short names"):
        download.era5_request([2000], variables=["t2m", "q"])
    assert len(download.era5_requests_by_year(1940, 1942)) == 3


def test_update_requests_fetch_the_era5t_months_again_and_the_new_months_by_year():
    cube = {"time": {"end": "2024-12"}, "era5t_months": ["2024-10", "2024-11", "2024-12"]}
    reqs = download.era5_update_requests(cube, "2025-02", area=[60, -10, 35, 30])
    assert [(r["year"], r["month"]) for _, r, _ in reqs] == [(["2024"], ["10", "11", "12"]), (["2025"], ["01", "02"])]
    assert [t for *_, t in reqs] == ["era5_monthly_2024_10-12.nc", "era5_monthly_2025_01-02.nc"]
    assert all(r["area"] == [60.0, -10.0, 35.0, 30.0] and len(r["variable"]) == 13 for _, r, _ in reqs)
    final = download.era5_update_requests({"time": {"end": "2024-12"}, "era5t_months": []}, "2025-01")
    assert [(r["year"], r["month"]) for _, r, _ in final] == [(["2025"], ["01"])]
    with pytest.raises(ValueError, match="before the first month the update needs"):
        download.era5_update_requests(cube, "2024-09")


def test_retrieve_needs_cdsapi_and_calls_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "cdsapi", None)  # simulate "not installed"
    with pytest.raises(download.MissingDependencyError, match="pip install cdsapi"):
        download.retrieve_era5(*download.era5_request([2000]), tmp_path / "x.nc")
    calls = []

    class Client:
        def retrieve(self, name, request, target):
            calls.append((name, request, target))

    monkeypatch.setitem(sys.modules, "cdsapi", types.SimpleNamespace(Client=Client))
    download.retrieve_era5(*download.era5_request([2000], [1]), tmp_path / "x.nc")
    assert calls[0][0] == download.ERA5_DATASET and calls[0][2].endswith("x.nc")


def test_mascon_sources():
    jpl = download.mascon_source("jpl", end="2024-12")
    assert jpl["short_name"] == "TELLUS_GRAC-GRFO_MASCON_CRI_GRID_RL06.3_V4"
    assert jpl["url"].endswith("GRCTellus.JPL.200204_202412.GLO.RL06.3M.MSCNv04CRI.nc")
    assert download.mascon_source("csr")["url"].endswith(
        "CSR_GRACE_GRACE-FO_RL0603_Mascons_all-corrections.nc"
    )
    assert "gsfc.glb_.200204_202603_rl06v2.0" in download.mascon_source("gsfc", "2026-03")["url"]
    with pytest.raises(ValueError, match="pass end"):
        download.mascon_source("gsfc")
