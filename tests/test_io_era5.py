"""ERA5 reader: both CDS layouts written byte-for-byte with netCDF4, values that encode coordinates."""

from __future__ import annotations

from datetime import datetime, timedelta

import netCDF4
import numpy as np
import pandas as pd
import pytest

from gtws_dl.io.era5 import file_months, open_era5
from gtws_dl.io.errors import InputFileError

# ---------------------------------------------------------------- builders (real CDS layouts)
LAT = np.array([90.0, 45.0, 0.0, -45.0, -90.0])  # node-registered, north first, like ERA5
LON = np.array([0.0, 90.0, 180.0, 270.0])  # 0..360


def field(name: str, months: list[datetime], lat=LAT, lon=LON) -> np.ndarray:
    """Value encodes (variable, month, lat, lon) so any indexing bug shows as a wrong number."""
    base = {
        "t2m": 250.0,
        "d2m": 240.0,
        "sp": 90000.0,
        "tp": 0.002,
        "ssrd": 1.0e7,
        "e": -0.002,  # with tp 0.002: precipitation balances evaporation, as on a real global grid
        "swvl1": 0.3,
        "sd": 0.01,
    }[name]
    scale = {"tp": 1e-5, "e": 1e-6, "ssrd": 1e4, "sp": 10.0, "swvl1": 1e-4, "sd": 1e-4}.get(name, 0.1)
    m = np.array([t.year * 12 + t.month - 2000 * 12 for t in months], dtype=float)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    return (base + scale * (m[:, None, None] + 0.01 * la[None] + 0.001 * lo[None])).astype(np.float64)


def expected(name, months, lat, lon):
    """Canonical-unit value at canonical coordinates (lon in -180..180)."""
    out = field(name, months, np.asarray(lat), np.mod(np.asarray(lon), 360.0))
    return out * {"tp": 1000.0, "e": 1000.0, "ssrd": 1 / 86400.0, "sd": 1000.0}.get(name, 1.0)


UNITS = {
    "t2m": "K",
    "d2m": "K",
    "sp": "Pa",
    "tp": "m",
    "e": "m of water equivalent",
    "ssrd": "J m**-2",
    "swvl1": "m**3 m**-3",
    "sd": "m of water equivalent",
}


def write_new(
    path,
    names,
    months,
    *,
    expver=None,
    lat=LAT,
    lon=LON,
    units=None,
    data=None,
    stamps=None,
    calendar="proleptic_gregorian",
):
    """New CDS layout (NetCDF4): valid_time int64 s since 1970, expver str, number scalar."""
    units = {**UNITS, **(units or {})}
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.GRIB_centre = "ecmf"
        nc.Conventions = "CF-1.7"
        nc.institution = "European Centre for Medium-Range Weather Forecasts"
        nc.history = "test"
        nc.createDimension("valid_time", len(months))
        nc.createDimension("latitude", len(lat))
        nc.createDimension("longitude", len(lon))
        v = nc.createVariable("number", "i8")
        v.long_name = "ensemble member numerical id"
        v.standard_name = "realization"
        v.assignValue(0)
        t = nc.createVariable("valid_time", "i8", ("valid_time",))
        t.long_name = "time"
        t.standard_name = "time"
        t.units = "seconds since 1970-01-01"
        t.calendar = calendar
        ts = stamps if stamps is not None else months
        t[:] = [int((s - datetime(1970, 1, 1)).total_seconds()) for s in ts]
        for nm, vals in (("latitude", lat), ("longitude", lon)):
            c = nc.createVariable(nm, "f8", (nm,))
            c[:] = vals
            c.units = "degrees_north" if nm == "latitude" else "degrees_east"
            c.standard_name = nm
        e = nc.createVariable("expver", str, ("valid_time",))
        e.long_name = "model version"
        for i in range(len(months)):
            e[i] = expver[i] if expver else "0001"
        for name in names:
            x = nc.createVariable(
                name, "f4", ("valid_time", "latitude", "longitude"), zlib=True, fill_value=np.float32(np.nan)
            )
            x.units = units[name]
            x.long_name = name
            x.GRIB_paramId = 167
            x.GRIB_shortName = name
            x.GRIB_units = units[name]
            x.coordinates = "number expver"
            x[:] = data[name] if data and name in data else field(name, months, lat, lon)
    return path


def write_old(path, names, months, *, expver_of=None, lat=LAT, lon=LON, stamps=None, units=None):
    """Old CDS layout: NETCDF3_64BIT_OFFSET, int32 hours since 1900, int16 packed, optional expver dim."""
    units = {**UNITS, **(units or {})}
    with netCDF4.Dataset(path, "w", format="NETCDF3_64BIT_OFFSET") as nc:
        nc.Conventions = "CF-1.6"
        nc.history = "2023-08-11 11:47:53 GMT by grib_to_netcdf-2.25.1: test"
        nc.createDimension("longitude", len(lon))
        nc.createDimension("latitude", len(lat))
        if expver_of is not None:
            nc.createDimension("expver", 2)
        nc.createDimension("time", len(months))
        lo = nc.createVariable("longitude", "f4", ("longitude",))
        lo.units, lo.long_name = "degrees_east", "longitude"
        lo[:] = lon
        la = nc.createVariable("latitude", "f4", ("latitude",))
        la.units, la.long_name = "degrees_north", "latitude"
        la[:] = lat
        if expver_of is not None:
            ev = nc.createVariable("expver", "i4", ("expver",))
            ev.long_name = "expver"
            ev[:] = [1, 5]
        t = nc.createVariable("time", "i4", ("time",))
        t.units, t.long_name, t.calendar = "hours since 1900-01-01 00:00:00.0", "time", "gregorian"
        ts = stamps if stamps is not None else months
        t[:] = [int((s - datetime(1900, 1, 1)).total_seconds() // 3600) for s in ts]
        for name in names:
            vals = field(name, months, lat, lon)
            lo_, hi_ = vals.min(), vals.max()
            # grib_to_netcdf packing: min -> -32766, max -> 32767 (-32767 is the fill value)
            scale = (hi_ - lo_) / 65533 if hi_ > lo_ else 1.0
            offset = hi_ - 32767 * scale
            dims = ("time", "latitude", "longitude")
            if expver_of is not None:
                dims = ("time", "expver", "latitude", "longitude")
            x = nc.createVariable(name, "i2", dims, fill_value=np.int16(-32767))
            x.scale_factor = scale
            x.add_offset = offset
            x.missing_value = np.int16(-32767)
            x.units = units[name]
            x.long_name = name
            x.set_auto_maskandscale(False)
            packed = np.round((vals - offset) / scale).astype(np.int16)
            if expver_of is None:
                x[:] = packed
            else:
                full = np.full((len(months), 2, len(lat), len(lon)), -32767, dtype=np.int16)
                for i, ev in enumerate(expver_of):
                    full[i, 0 if ev == 1 else 1] = packed[i]
                x[:] = full
    return path, scale


def months(start="2000-01", n=3):
    return [d.to_pydatetime() for d in pd.date_range(start, periods=n, freq="MS")]


# ---------------------------------------------------------------- known answers
def test_new_layout_units_and_canonical_grid(tmp_path):
    ms = months(n=3)
    p = write_new(tmp_path / "data_stream-moda.nc", ["t2m", "tp", "ssrd", "sd"], ms)
    ds = open_era5(p)
    assert list(ds.data_vars) == ["t2m", "tp", "ssrd", "sd"]
    assert ds["t2m"].dims == ("time", "lat", "lon")
    np.testing.assert_array_equal(ds["lat"], [-90, -45, 0, 45, 90])
    np.testing.assert_array_equal(ds["lon"], [-180, -90, 0, 90])
    assert ds["t2m"].dtype == np.float32
    assert pd.DatetimeIndex(ds["time"].values).equals(pd.DatetimeIndex(ms))
    assert "number" not in ds.coords and "expver" not in ds.coords
    assert ds["tp"].attrs["units"] == "mm day-1" and ds["ssrd"].attrs["units"] == "W m-2"
    assert ds["sd"].attrs["units"] == "mm"
    for name in ("t2m", "tp", "ssrd", "sd"):
        np.testing.assert_allclose(
            ds[name].values, expected(name, ms, ds["lat"].values, ds["lon"].values), rtol=1e-6
        )
    # spot check by hand: tp at lat 45, lon -90 (=270) in 2000-02 (m=2)
    tp = ds["tp"].sel(time="2000-02-01", lat=45.0, lon=-90.0).values
    assert float(tp) == pytest.approx((0.002 + 1e-5 * (2 + 0.45 + 0.27)) * 1000, rel=1e-6)
    assert str(p) in ds.attrs["source_files"]


def test_old_layout_packed_int16_decodes_within_precision(tmp_path):
    ms = months(n=4)
    p, scale = write_old(tmp_path / "old.nc", ["t2m"], ms)
    ds = open_era5(p)
    np.testing.assert_allclose(
        ds["t2m"].values, expected("t2m", ms, ds["lat"].values, ds["lon"].values), atol=scale * 0.51 + 1e-4
    )
    assert ds["t2m"].dtype == np.float32 and ds["t2m"].attrs["units"] == "K"


def test_split_stepType_files_and_per_year_files_in_a_directory(tmp_path):
    d = tmp_path / "era5"
    d.mkdir()
    for y in (2000, 2001):
        ms = months(f"{y}-01", 12)
        write_new(d / f"{y}_data_stream-moda_stepType-avgua.nc", ["t2m", "sp"], ms)
        write_new(d / f"{y}_data_stream-moda_stepType-avgad.nc", ["tp", "e"], ms)
    ds = open_era5(d, ["t2m", "tp", "e"])
    assert ds.sizes["time"] == 24 and list(ds.data_vars) == ["t2m", "tp", "e"]
    allm = months("2000-01", 24)
    np.testing.assert_allclose(
        ds["e"].values, expected("e", allm, ds["lat"].values, ds["lon"].values), rtol=1e-5
    )
    # glob and list give the same
    g = open_era5(str(d / "2000_*.nc"), ["tp"])
    assert g.sizes["time"] == 12
    lst = open_era5(sorted(d.glob("*.nc")), ["sp"], start="2000-06", end="2001-03")
    assert lst.sizes["time"] == 10


def test_era5t_merge_prefers_era5_new_layout(tmp_path):
    ms = months(n=3)
    t_vals = field("t2m", ms)
    t_vals[2] += 5.0  # the preliminary ERA5T version of month 3 differs
    write_new(tmp_path / "a_prelim.nc", ["t2m"], ms, expver=["0001", "0001", "0005"], data={"t2m": t_vals})
    write_new(tmp_path / "b_final.nc", ["t2m"], ms[2:], expver=["0001"])
    ds = open_era5(tmp_path)
    assert ds.sizes["time"] == 3
    np.testing.assert_allclose(
        ds["t2m"].values, expected("t2m", ms, ds["lat"].values, ds["lon"].values), rtol=1e-6
    )


def test_era5t_merge_old_layout_expver_dimension(tmp_path):
    ms = months(n=4)
    p, scale = write_old(tmp_path / "mixed.nc", ["t2m"], ms, expver_of=[1, 1, 5, 5])
    ds = open_era5(p)
    assert "expver" not in ds.dims and "expver" not in ds.coords
    assert not np.isnan(ds["t2m"].values).any()
    np.testing.assert_allclose(
        ds["t2m"].values, expected("t2m", ms, ds["lat"].values, ds["lon"].values), atol=scale * 0.51 + 1e-4
    )


def test_six_hour_shifted_accumulation_stamps_land_in_the_right_month(tmp_path):
    ms = months("2000-01", 3)
    shifted = [m - timedelta(hours=6) for m in ms]  # 1999-12-31T18:00, ...
    write_new(tmp_path / "ua.nc", ["t2m"], ms)
    write_new(tmp_path / "ad.nc", ["tp"], ms, stamps=shifted)
    ds = open_era5(tmp_path)
    assert pd.DatetimeIndex(ds["time"].values).equals(pd.DatetimeIndex(ms))
    np.testing.assert_allclose(
        ds["tp"].values, expected("tp", ms, ds["lat"].values, ds["lon"].values), rtol=1e-6
    )
    later = [m + timedelta(hours=6) for m in ms]
    write_old(tmp_path / "old_ad.nc", ["e"], ms, stamps=later)
    assert open_era5(tmp_path / "old_ad.nc")["time"].values[0] == np.datetime64("2000-01-01")


def test_flipped_latitude_and_signed_longitude_are_handled(tmp_path):
    ms = months(n=2)
    lat_up = LAT[::-1]
    lon_pm = np.array([-180.0, -90.0, 0.0, 90.0])
    p1 = write_new(tmp_path / "std.nc", ["t2m"], ms)
    p2 = write_new(
        tmp_path / "flip.nc",
        ["t2m"],
        ms,
        lat=lat_up,
        lon=lon_pm,
        data={"t2m": field("t2m", ms, lat_up, np.mod(lon_pm, 360))},
    )
    a, b = open_era5(p1), open_era5(p2)
    np.testing.assert_array_equal(a["t2m"].values, b["t2m"].values)
    np.testing.assert_array_equal(a["lon"].values, b["lon"].values)


# ---------------------------------------------------------------- bad input → InputFileError
def test_missing_variable_names_file_and_available(tmp_path):
    p = write_new(tmp_path / "x.nc", ["t2m", "tp"], months())
    with pytest.raises(
        InputFileError, match=r"x\.nc.*'swvl1'.*missing.*Available variables: \['t2m', 'tp'\]"
    ):
        open_era5(p, ["t2m", "swvl1"])


def test_unknown_units(tmp_path):
    p = write_new(tmp_path / "u.nc", ["tp"], months(), units={"tp": "furlongs"})
    with pytest.raises(InputFileError, match=r"u\.nc.*'tp'.*expected units one of.*found 'furlongs'"):
        open_era5(p)


def test_grid_differs_from_siblings(tmp_path):
    write_new(tmp_path / "a.nc", ["t2m"], months("2000-01", 2))
    write_new(
        tmp_path / "b.nc",
        ["t2m"],
        months("2000-03", 2),
        lat=np.array([90.0, 0.0, -90.0]),
        data={"t2m": field("t2m", months("2000-03", 2), np.array([90.0, 0.0, -90.0]))},
    )
    with pytest.raises(InputFileError, match=r"b\.nc.*'t2m'.*same grid as its sibling.*a\.nc.*found 3x4"):
        open_era5(tmp_path)


def test_truncated_netcdf_names_the_file(tmp_path):
    p = write_new(tmp_path / "full.nc", ["t2m"], months(n=12))
    raw = p.read_bytes()
    bad = tmp_path / "truncated.nc"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputFileError, match=r"truncated\.nc.*truncated or corrupt"):
        open_era5(bad)
    junk = tmp_path / "junk.nc"
    junk.write_bytes(b"<html>Service unavailable</html>")
    with pytest.raises(InputFileError, match=r"junk\.nc.*cannot be opened"):
        open_era5(junk)
    p3, _ = write_old(tmp_path / "old_full.nc", ["t2m"], months(n=24))
    raw3 = p3.read_bytes()
    bad3 = tmp_path / "old_truncated.nc"
    bad3.write_bytes(raw3[: len(raw3) - 200])
    with pytest.raises(InputFileError, match=r"old_truncated\.nc.*truncated or corrupt"):
        open_era5(bad3)


def test_all_nan_months_are_named(tmp_path):
    ms = months(n=4)
    vals = field("t2m", ms)
    vals[1] = np.nan
    vals[3] = np.nan
    p = write_new(tmp_path / "gap.nc", ["t2m"], ms, data={"t2m": vals})
    with pytest.raises(InputFileError, match=r"gap\.nc.*'t2m'.*all-NaN months 2000-02, 2000-04"):
        open_era5(p)


def test_duplicate_timestamps_with_conflicting_data(tmp_path):
    ms = months(n=2)
    write_new(tmp_path / "one.nc", ["t2m"], ms)
    other = field("t2m", ms) + 1.0
    write_new(tmp_path / "two.nc", ["t2m"], ms, data={"t2m": other})
    with pytest.raises(
        InputFileError, match=r"'t2m'.*duplicate time stamp 2000-01 with conflicting data.*one\.nc.*two\.nc"
    ):
        open_era5(tmp_path)
    # identical copies are fine
    (tmp_path / "two.nc").unlink()
    write_new(tmp_path / "copy.nc", ["t2m"], ms)
    assert open_era5(tmp_path).sizes["time"] == 2


def test_requested_period_not_covered(tmp_path):
    p = write_new(tmp_path / "short.nc", ["t2m"], months("1990-01", 12))
    with pytest.raises(
        InputFileError, match=r"short\.nc.*'t2m'.*requested period 1940-01 .. 1990-12.*1990-01 .. 1990-12"
    ):
        open_era5(p, start="1940-01", end="1990-12")


def test_gap_in_record(tmp_path):
    write_new(tmp_path / "a.nc", ["t2m"], months("2000-01", 2))
    write_new(tmp_path / "b.nc", ["t2m"], months("2000-05", 2))
    with pytest.raises(InputFileError, match=r"'t2m'.*missing months 2000-03, 2000-04"):
        open_era5(tmp_path)


def test_non_standard_calendar_and_non_monthly_data(tmp_path):
    p = write_new(tmp_path / "cal.nc", ["t2m"], months(), calendar="360_day")
    with pytest.raises(InputFileError, match=r"cal\.nc.*standard calendar.*found calendar '360_day'"):
        open_era5(p)
    days = [datetime(2000, 1, 1) + timedelta(days=i) for i in range(3)]
    p2 = write_new(tmp_path / "daily.nc", ["t2m"], days, stamps=days)
    with pytest.raises(InputFileError, match=r"daily\.nc.*monthly"):
        open_era5(p2)
    odd = [datetime(2000, 1, 9), datetime(2000, 2, 9)]
    p3 = write_new(tmp_path / "odd.nc", ["t2m"], odd, stamps=odd)
    with pytest.raises(InputFileError, match=r"odd\.nc.*monthly-mean stamps at a month start.*found stamps such as "
                                             r"\['2000-01-09T00:00', '2000-02-09T00:00'\]"):
        open_era5(p3)


@pytest.mark.parametrize("label, shift, bounds", [
    ("mid-month (CF)", lambda t: t + pd.Timedelta(days=14), False),
    ("pandas 'ME' month end", lambda t: t + pd.offsets.MonthEnd(0), False),
    ("noon of the last day", lambda t: t + pd.offsets.MonthEnd(0) + pd.Timedelta(hours=12), False),
    ("cdo monmean 23:00 with time_bnds", lambda t: t + pd.offsets.MonthEnd(0) + pd.Timedelta(hours=23), True),
    ("18:00 the day before (ERA5 accumulations)", lambda t: t - pd.Timedelta(hours=6), False),
])
def test_other_monthly_stamp_conventions_give_the_same_months(tmp_path, label, shift, bounds):
    """Monthly means stamped as other tools do (month end, mid-month, with CF bounds) are the same months — not the
    month after (a month-end stamp + 1 day used to fall in the next month: the whole record shifted by one)."""
    ref = open_era5(write_new(tmp_path / "ref.nc", ["t2m"], months("2000-01", 14)))
    t = pd.DatetimeIndex(months("2000-01", 14))
    p = write_new(tmp_path / "x.nc", ["t2m"], months("2000-01", 14), stamps=list(shift(t).to_pydatetime()))
    if bounds:
        with netCDF4.Dataset(p, "a") as nc:
            tv = nc["valid_time"]
            nc.createDimension("bnds", 2)
            b = nc.createVariable("valid_time_bnds", "i8", ("valid_time", "bnds"))
            lo, hi = t, t + pd.offsets.MonthBegin(1)
            b[:] = np.stack([netCDF4.date2num(list(x.to_pydatetime()), tv.units, "proleptic_gregorian")
                             for x in (lo, hi)], axis=1)
            tv.bounds = "valid_time_bnds"
    got = open_era5(p)
    np.testing.assert_array_equal(got.time.values, ref.time.values, err_msg=label)
    np.testing.assert_array_equal(got["t2m"].values, ref["t2m"].values, err_msg=label)
    assert list(file_months(p)) == list(pd.DatetimeIndex(ref.time.values)), label


def test_a_stamp_late_on_the_last_day_without_bounds_is_refused_as_ambiguous(tmp_path):
    """23:00 on a month's last day (cdo monmean without time bounds): that month, or the next 1 h early? Refused
    with the fix, never guessed."""
    t = pd.DatetimeIndex(months("2000-01", 3)) + pd.offsets.MonthEnd(0) + pd.Timedelta(hours=23)
    p = write_new(tmp_path / "cdo.nc", ["t2m"], months("2000-01", 3), stamps=list(t.to_pydatetime()))
    with pytest.raises(InputFileError, match=r"cdo\.nc.*found stamps such as \['2000-01-31T23:00'.*cdo monmean.*"
                                             r"settbounds,1mon"):
        open_era5(p)
