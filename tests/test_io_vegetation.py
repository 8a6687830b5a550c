"""LAI/SIF/land cover readers and filling before the record starts."""

from __future__ import annotations

from datetime import datetime

import netCDF4
import numpy as np
import pandas as pd
import pytest

from gtws_dl.io.errors import InputFileError
from gtws_dl.io.vegetation import (
    fill_before_record,
    landcover_to_monthly,
    open_lai,
    open_landcover,
    open_sif,
)

LAT_DESC = np.array([60.0, 20.0, -20.0, -60.0])
LON_360 = np.array([45.0, 135.0, 225.0, 315.0])


def write_monthly(path, var, units, stamps, *, lat=LAT_DESC, lon=LON_360, values=None, calendar="standard"):
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("time", None)
        nc.createDimension("lat", len(lat))
        nc.createDimension("lon", len(lon))
        t = nc.createVariable("time", "f8", ("time",))
        t.units, t.calendar = "days since 1970-01-01", calendar
        t[:] = [(s - datetime(1970, 1, 1)).days for s in stamps]
        nc.createVariable("lat", "f4", ("lat",))[:] = lat
        nc.createVariable("lon", "f4", ("lon",))[:] = lon
        x = nc.createVariable(var, "f4", ("time", "lat", "lon"), fill_value=np.float32(-9999))
        x.units = units
        if values is None:
            m = np.arange(len(stamps))
            values = m[:, None, None] + 0.01 * lat[None, :, None] + 0.001 * lon[None, None, :]
        x[:] = values
    return path


def mid_months(start, n):
    return [
        p.to_timestamp().to_pydatetime().replace(day=15) for p in pd.period_range(start, periods=n, freq="M")
    ]


def test_lai_flipped_lat_and_0_360_lon_are_canonicalised(tmp_path):
    p = write_monthly(tmp_path / "lai.nc", "LAI", "m2 m-2", mid_months("1982-01", 3))
    da = open_lai(p)
    np.testing.assert_array_equal(da.lat, [-60, -20, 20, 60])
    np.testing.assert_array_equal(da.lon, [-135, -45, 45, 135])
    assert da.time.values[0] == np.datetime64("1982-01-01")
    # value at (month 2, lat 20, lon -135 = 225) encodes its coordinates
    assert float(da.sel(lat=20, lon=-135).values[2]) == pytest.approx(2 + 0.2 + 0.225, rel=1e-6)


def test_sif_units_checked(tmp_path):
    ok = write_monthly(tmp_path / "sif.nc", "SIF", "W m-2 um-1 sr-1", mid_months("2001-01", 2))
    assert open_sif(ok).attrs["units"] == "mW m-2 nm-1 sr-1"
    bad = write_monthly(tmp_path / "sif_bad.nc", "SIF", "counts", mid_months("2001-01", 2))
    with pytest.raises(InputFileError, match=r"sif_bad\.nc.*'SIF'.*found 'counts'"):
        open_sif(bad)
    with pytest.raises(InputFileError, match=r"sif\.nc.*'LAI'.*missing.*Available variables: .*'SIF'"):
        open_lai(ok)


def test_fill_before_record_climatology_and_availability(tmp_path):
    n = 14 * 12
    stamps = mid_months("1982-01", n)
    vals = np.zeros((n, 4, 4))
    moy = np.array([s.month for s in stamps], dtype=float)
    year = np.array([s.year for s in stamps], dtype=float)
    vals += (moy + (year - 1982) * 0.1)[:, None, None]  # climatology of 1982..1991 = month + 0.45
    vals[30] = -9999  # a gap month (1984-07) stored as fill
    da = open_lai(write_monthly(tmp_path / "lai.nc", "LAI", "m2 m-2", stamps, values=vals))
    target = pd.date_range("1980-01-01", "1996-12-01", freq="MS")
    filled, avail = fill_before_record(da, target)
    assert filled.sizes["time"] == len(target) and not np.isnan(filled.values).any()
    f = filled.isel(lat=0, lon=0).to_series()
    assert f["1980-03-01"] == pytest.approx(3.45, rel=1e-6)
    # gap filled by the July climatology, which itself lacks 1984: 7 + 0.1 * mean(0,1,3..9)
    assert f["1984-07-01"] == pytest.approx(7 + 0.1 * 43 / 9, rel=1e-6)
    assert f["1990-05-01"] == pytest.approx(5.8, rel=1e-6)  # observed kept
    assert f["1996-12-01"] == pytest.approx(12.45, rel=1e-6)  # after the record
    a = avail.to_series()
    assert a["1981-12-01"] == 0 and a["1982-01-01"] == 1 and a["1984-07-01"] == 0 and a["1995-12-01"] == 1
    assert a["1996-01-01"] == 0 and avail.dtype == np.float32


def test_landcover_annual_held_and_first_year_before_record(tmp_path):
    p = tmp_path / "landcover.nc"
    classes = ["forest", "cropland"]
    with netCDF4.Dataset(p, "w") as nc:
        nc.createDimension("time", 3)
        nc.createDimension("class", 2)
        nc.createDimension("lat", 2)
        nc.createDimension("lon", 2)
        t = nc.createVariable("time", "i4", ("time",))
        t.units, t.calendar = "days since 1990-01-01", "gregorian"
        t[:] = [(datetime(y, 1, 1) - datetime(1990, 1, 1)).days for y in (1992, 1993, 1994)]
        c = nc.createVariable("class", str, ("class",))
        for i, k in enumerate(classes):
            c[i] = k
        nc.createVariable("lat", "f4", ("lat",))[:] = [45, -45]
        nc.createVariable("lon", "f4", ("lon",))[:] = [90, 270]
        x = nc.createVariable("land_cover_fraction", "f4", ("time", "class", "lat", "lon"))
        x.units = "%"
        x[:] = (
            np.arange(3)[:, None, None, None] * 10
            + np.array([20, 40])[None, :, None, None]
            + np.zeros((3, 2, 2, 2))
        )
    lc = open_landcover(p)
    assert lc.dims == ("time", "class", "lat", "lon") and list(lc["class"].values) == classes
    assert float(lc.isel(time=0).sel({"class": "forest"}).values[0, 0]) == pytest.approx(0.2)
    monthly = landcover_to_monthly(lc, pd.date_range("1990-01", "1995-06", freq="MS"))
    s = monthly.sel({"class": "cropland"}).isel(lat=0, lon=0).to_series()
    assert s["1990-01-01"] == pytest.approx(0.4)  # before the record: first year
    assert s["1993-07-01"] == pytest.approx(0.5)
    assert s["1995-06-01"] == pytest.approx(0.6)  # after: last year


def test_non_standard_calendar_and_sub_monthly_refused(tmp_path):
    p = write_monthly(tmp_path / "lai360.nc", "LAI", "m2 m-2", mid_months("1982-01", 2), calendar="360_day")
    with pytest.raises(InputFileError, match=r"lai360\.nc.*standard calendar.*'360_day'"):
        open_lai(p)
    days = [datetime(1982, 1, d) for d in (1, 11, 21)]
    p2 = write_monthly(tmp_path / "dekad.nc", "LAI", "m2 m-2", days)
    with pytest.raises(InputFileError, match=r"dekad\.nc.*'LAI'.*monthly data.*1982-01"):
        open_lai(p2)
