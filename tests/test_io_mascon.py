"""Mascon reader: JPL/CSR/GSFC layouts written with netCDF4; month assignment, units, baseline."""

from __future__ import annotations

import logging
from datetime import datetime

import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from gtws_dl.io.errors import InputFileError
from gtws_dl.io.mascon import assign_months, open_mascon

EPOCH = datetime(2002, 1, 1)


def days(d: datetime) -> float:
    return (d - EPOCH).total_seconds() / 86400.0


def write_mascon(
    path,
    spans,
    values,
    *,
    res=30.0,
    lon0=None,
    time_last=False,
    units="cm",
    dtype="f8",
    calendar="gregorian",
    with_bounds=True,
    var="lwe_thickness",
):
    """JPL-like layout: lat ascending cell centres, lon 0..360 (or -180..180 via lon0),
    time = mid-span days since 2002-01-01T00:00:00Z, time_bounds (time, 2)."""
    lat = np.arange(-90 + res / 2, 90, res)
    lon = np.arange(0 + res / 2, 360, res) if lon0 is None else np.arange(lon0 + res / 2, lon0 + 360, res)
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.title = "test mascons"
        nc.months_missing = "2002-06;2002-07"
        nc.createDimension("lon", len(lon))
        nc.createDimension("lat", len(lat))
        nc.createDimension("time", len(spans))
        nc.createDimension("bounds", 2)
        for nm, v in (("lat", lat), ("lon", lon)):
            c = nc.createVariable(nm, "f8", (nm,))
            c[:] = v
            c.units = "degrees_north" if nm == "lat" else "degrees_east"
        t = nc.createVariable("time", "f8", ("time",))
        t.units = "days since 2002-01-01T00:00:00Z"
        t.calendar = calendar
        t[:] = [(days(a) + days(b)) / 2 for a, b in spans]
        if with_bounds:
            t.bounds = "time_bounds"
            tb = nc.createVariable("time_bounds", "f8", ("time", "bounds"))
            tb[:] = [[days(a), days(b)] for a, b in spans]
        dims = ("lat", "lon", "time") if time_last else ("time", "lat", "lon")
        x = nc.createVariable(var, dtype, dims, fill_value=-99999.0 if dtype == "f8" else None)
        x.units = units
        x.long_name = "Liquid_Water_Equivalent_Thickness"
        arr = np.broadcast_to(
            np.asarray(values, dtype=float)[:, None, None], (len(spans), len(lat), len(lon))
        )
        arr = arr + 0.001 * lat[None, :, None] + 0.0001 * np.mod(lon, 360)[None, None, :]
        x[:] = np.moveaxis(arr, 0, -1) if time_last else arr
    return path, lat, lon


def write_aux(path, lat, lon, scale, mask):
    """A JPL-like gain-factor file: ``scale_factor`` and ``land_mask`` (lat, lon) on the mascon grid."""
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("lat", len(lat))
        nc.createDimension("lon", len(lon))
        for nm, v in (("lat", lat), ("lon", lon)):
            nc.createVariable(nm, "f8", (nm,))[:] = v
        nc.createVariable("scale_factor", "f8", ("lat", "lon"))[:] = scale
        nc.createVariable("land_mask", "f8", ("lat", "lon"))[:] = mask
    return path


def month_spans(first="2004-01", n=12):
    out = []
    for m in pd.period_range(first, periods=n, freq="M"):
        a = m.to_timestamp().to_pydatetime()
        b = (m + 1).to_timestamp().to_pydatetime()
        out.append((a, b))
    return out


def test_assign_months_two_month_span_and_ties():
    spans = [
        (datetime(2004, 1, 1), datetime(2004, 1, 31)),
        (datetime(2004, 2, 20), datetime(2004, 3, 20)),  # 9 days Feb, 19 days Mar -> March
        (datetime(2004, 4, 16), datetime(2004, 5, 16)),
    ]  # 15 Apr, 15 May -> tie -> month of mid
    mid = pd.DatetimeIndex([a + (b - a) / 2 for a, b in spans])
    b = pd.DatetimeIndex([x for s in spans for x in s])
    months, frac = assign_months(mid, b)
    assert list(months.strftime("%Y-%m")) == ["2004-01", "2004-03", "2004-05"]
    assert frac[1] == pytest.approx(19 / 29)


def test_units_month_assignment_duplicates_and_missing_months(tmp_path, caplog):
    spans = month_spans("2004-01", 6)
    spans[3] = (datetime(2004, 4, 1), datetime(2004, 4, 10))  # short April solution
    spans.append((datetime(2004, 3, 25), datetime(2004, 4, 24)))  # spans Mar/Apr: mostly April
    spans.append(spans[0])  # exact duplicate of January
    del spans[4]  # May missing
    values = [1.0, 2.0, 3.0, 4.0, 6.0, 7.0, 1.0]  # cm; the duplicate of Jan is the same solution
    p, lat, lon = write_mascon(tmp_path / "GRCTellus.JPL.test.nc", spans, values)
    (tmp_path / "two").mkdir()
    bad, *_ = write_mascon(tmp_path / "two" / "GRCTellus.JPL.test.nc", spans, [*values[:-1], 3.0])
    with pytest.raises(InputFileError, match=r"one solution per month, or copies of it that agree; found 2 solutions "
                                             r"for 2004-01 .* that differ by up to 20 mm"):
        open_mascon(bad, "jpl", baseline=None)  # two releases in one file: neither averaged nor picked
    with caplog.at_level(logging.WARNING):
        da = open_mascon(p, "jpl", baseline=None)
    assert da.name == "twsa" and da.attrs["units"] == "mm" and da.dtype == np.float32
    assert list(pd.DatetimeIndex(da.time.values).strftime("%Y-%m")) == [
        "2004-01",
        "2004-02",
        "2004-03",
        "2004-04",
        "2004-06",
    ]
    cell = da.sel(lat=lat[0], lon=lon[0] if lon[0] < 180 else lon[0] - 360)
    off = 10 * (0.001 * lat[0] + 0.0001 * lon[0])
    # Jan: one of the identical copies -> 10 mm; Apr: the 10-day solution lies 100% in April
    # and beats the Mar/Apr one (24 of 30 days in April) -> 40 mm; May absent, not interpolated
    np.testing.assert_allclose(cell.values, np.array([10, 20, 30, 40, 60]) + off, rtol=1e-5)
    assert "2004-01" in caplog.text and "2004-04" in caplog.text


def test_baseline_rereferencing_gives_zero_mean(tmp_path):
    spans = month_spans("2003-01", 96)
    rng = np.random.default_rng(0)
    p, *_ = write_mascon(tmp_path / "CSR.nc", spans, rng.normal(size=96), dtype="f4")
    da = open_mascon(p, "csr")
    base = da.sel(time=slice("2004-01", "2009-12"))
    np.testing.assert_allclose(base.mean("time").values, 0.0, atol=1e-4)
    assert da.attrs["centre"] == "csr" and da.attrs["source_file"].endswith("CSR.nc")


def test_gsfc_time_last_and_signed_longitude_equal_jpl_layout(tmp_path, caplog):
    spans = month_spans("2004-01", 4)
    a, *_ = write_mascon(tmp_path / "jpl.nc", spans, [1, 2, 3, 4])
    b, *_ = write_mascon(
        tmp_path / "gsfc.nc", spans, [1, 2, 3, 4], lon0=-180.0, time_last=True, with_bounds=False
    )
    x, y = open_mascon(a, "jpl", baseline=None), open_mascon(b, "gsfc", baseline=None)
    np.testing.assert_array_equal(x.lon.values, y.lon.values)
    assert np.all(np.diff(y.lon.values) > 0) and y.lon.min() >= -180
    np.testing.assert_allclose(x.values, y.values, rtol=1e-6)


def test_gain_factor_and_land_mask(tmp_path):
    spans = month_spans("2004-01", 2)
    p, lat, lon = write_mascon(tmp_path / "jpl.nc", spans, [1.0, 2.0])
    mask = np.ones((len(lat), len(lon)))
    mask[0, :] = 0
    g = write_aux(tmp_path / "CLM4.SCALE_FACTOR.JPL.MSCNv04CRI.nc", lat, lon, np.full(mask.shape, 2.0), mask)
    base = open_mascon(p, "jpl", baseline=None)
    gained = open_mascon(p, "jpl", gain_factor=g, land_mask=g, baseline=None)
    np.testing.assert_allclose(gained.values[:, 1:], 2 * base.values[:, 1:], rtol=1e-6)
    assert np.isnan(gained.values[:, 0]).all()


@pytest.mark.parametrize("layout", ["jpl", "gsfc_time_last"])
def test_latitude_bands_read_the_rows_of_the_whole_file(tmp_path, layout):
    """Bands read with ``lat`` windows (what the cube builder does, memory one band) are exactly the rows of the
    whole file's result: units, duplicate months, gain factors, land mask and the per-cell baseline."""
    spans = month_spans("2004-01", 30)
    spans.append(spans[2])  # an identical copy of a month: resolved the same way in every band
    values = np.sin(np.arange(31.0))
    values[-1] = values[2]
    kw = {"lon0": -180.0, "time_last": True, "with_bounds": False} if layout == "gsfc_time_last" else {}
    p, lat, lon = write_mascon(tmp_path / "m.nc", spans, values, res=10.0, **kw)
    rng = np.random.default_rng(0)
    g = write_aux(tmp_path / "gain.nc", lat, lon, rng.uniform(0.5, 2.0, (len(lat), len(lon))),
                  rng.uniform(0, 1, (len(lat), len(lon))) > 0.3)
    kw = {"gain_factor": g, "land_mask": g, "baseline": ("2004-01", "2005-12")}
    whole = open_mascon(p, "jpl", **kw)
    windows = [(-90, -45), (-44.9, 0), (0.1, 51), (51.5, 90)]  # uneven bands, edges between rows
    parts = [open_mascon(p, "jpl", lat=w, checks=False, **kw) for w in windows]
    assert sum(b.sizes["lat"] for b in parts) == whole.sizes["lat"] == len(lat)
    banded = xr.concat(parts, dim="lat")
    np.testing.assert_array_equal(banded["lat"].values, whole["lat"].values)
    np.testing.assert_array_equal(banded["time"].values, whole["time"].values)
    np.testing.assert_allclose(banded.values, whole.values, rtol=1e-6, equal_nan=True)
    assert np.isnan(whole.values).any() and np.isfinite(whole.values).any()


# ---------------------------------------------------------------- errors
def test_no_lwe_thickness_lists_variables(tmp_path):
    p, *_ = write_mascon(tmp_path / "bad.nc", month_spans(n=2), [1, 2], var="ewh")
    with pytest.raises(
        InputFileError, match=r"bad\.nc.*'lwe_thickness'.*missing.*Available variables: .*'ewh'"
    ):
        open_mascon(p, "csr")


def test_unknown_units(tmp_path):
    p, *_ = write_mascon(tmp_path / "u.nc", month_spans(n=2), [1, 2], units="inches")
    with pytest.raises(InputFileError, match=r"u\.nc.*'lwe_thickness'.*units one of.*found 'inches'"):
        open_mascon(p, "jpl")


def test_no_months_in_training_window_or_baseline(tmp_path):
    p, *_ = write_mascon(tmp_path / "late.nc", month_spans("2019-01", 3), [1, 2, 3])
    with pytest.raises(InputFileError, match=r"late\.nc.*window 2002-04 .. 2016-12.*2019-01 .. 2019-03"):
        open_mascon(p, "jpl", window=("2002-04", "2016-12"), baseline=None)
    with pytest.raises(InputFileError, match=r"late\.nc.*baseline 2004-01 .. 2009-12"):
        open_mascon(p, "jpl")


def test_non_standard_calendar(tmp_path):
    p, *_ = write_mascon(tmp_path / "cal.nc", month_spans(n=2), [1, 2], calendar="noleap")
    with pytest.raises(InputFileError, match=r"cal\.nc.*standard calendar.*'noleap'"):
        open_mascon(p, "jpl")


def test_truncated_mascon(tmp_path):
    p, *_ = write_mascon(tmp_path / "full.nc", month_spans(n=24), np.arange(24.0))
    bad = tmp_path / "cut.nc"
    bad.write_bytes(p.read_bytes()[:3000])
    with pytest.raises(InputFileError, match=r"cut\.nc.*truncated or corrupt"):
        open_mascon(bad, "jpl")
