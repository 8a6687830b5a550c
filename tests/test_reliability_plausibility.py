"""Plausibility at the reader edge (issue 17): undeclared fill sentinels, values outside physical bounds, unit labels
that contradict the magnitude — each refused with the file, the variable, the range found and the range expected.

Files are written in ``tmp_path`` with the reader tests' real-layout builders (``test_io_*``) or the twin's writers.
"""

from __future__ import annotations

import glob
import json
import logging
import re
import shutil
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import test_io_era5 as era5b
import test_io_mascon as masb
import test_io_vegetation as vegb

from gtws_dl.io.era5 import open_era5
from gtws_dl.io.errors import InputFileError
from gtws_dl.io.mascon import open_mascon
from gtws_dl.io.plausibility import Policy
from gtws_dl.io.vegetation import open_lai, open_landcover, open_sif

pytestmark = pytest.mark.reliability

N = 12  # months


def _era5(tmp_path, name: str, values: np.ndarray, units: str, *, extra=("t2m",)) -> Path:
    names = [name, *[e for e in extra if e != name]]
    return era5b.write_new(tmp_path / f"{name}.nc", names, era5b.months("2000-01", N), data={name: values},
                           units={name: units})


def _shape():
    return (N, len(era5b.LAT), len(era5b.LON))


def _mascon(tmp_path, values_cm: np.ndarray, *, name="jpl.nc", dtype="f4", units="cm", edit=None) -> Path:
    p, *_ = masb.write_mascon(tmp_path / name, masb.month_spans("2004-01", N), values_cm, dtype=dtype, units=units)
    if edit is not None:
        with netCDF4.Dataset(p, "a") as nc:
            x = nc["lwe_thickness"]
            arr = x[:].filled(np.nan) if np.ma.isMaskedArray(x[:]) else np.asarray(x[:])
            edit(arr)
            x[:] = arr
    return p


SEASON_CM = 10 * np.sin(2 * np.pi * np.arange(N) / 12)  # a 10 cm seasonal cycle


# ---------------------------------------------------------------------------------------------- sentinel
@pytest.mark.parametrize("sentinel", [-99999.0, -9999.0, 9.96921e36, 1e20])
def test_mascon_undeclared_sentinel(tmp_path, sentinel):
    """-99999 where no _FillValue is declared used to become a -999,990 mm target; now refused, naming it."""

    def put(a):
        a[:, :2, :3] = sentinel

    p = _mascon(tmp_path, SEASON_CM, edit=put)  # float32, no _FillValue declared
    with pytest.raises(InputFileError, match=rf"jpl\.nc: variable 'lwe_thickness': expected no undeclared fill values"
                       rf".*found 72 of 864 values equal to the fill sentinel {re.escape(f'{sentinel:g}')} cm, which the file does not "
                       r"declare \(.*no _FillValue/missing_value\)\. declare it, e\.g\. `ncatted -a _FillValue,"
                       r"lwe_thickness.*or fix the file"):
        open_mascon(p, "jpl")


def test_declared_fill_is_not_a_fault_and_infinities_are(tmp_path):
    def put(a):
        a[0, 0, 0] = -99999.0

    open_mascon(_mascon(tmp_path, SEASON_CM, dtype="f8", edit=put), "jpl")  # f8 builder declares _FillValue -99999

    def inf(a):
        a[1, 2, 3] = np.inf

    with pytest.raises(InputFileError, match=r"inf\.nc: variable 'lwe_thickness': expected finite values or NaN; "
                                             r"found 1 infinite values"):
        open_mascon(_mascon(tmp_path, SEASON_CM, name="inf.nc", edit=inf), "jpl")


def test_era5_undeclared_sentinel_names_the_file(tmp_path):
    vals = era5b.field("t2m", era5b.months("2000-01", N))
    vals[3, 1, :] = -9999.0
    p = _era5(tmp_path, "t2m", vals, "K", extra=())
    with pytest.raises(InputFileError, match=r"t2m\.nc: variable 't2m': .*found 4 of 240 values equal to the fill "
                                             r"sentinel -9999 K.*data\.plausibility\.skip=\[t2m\]"):
        open_era5(p)


def test_packed_int16_minus_32767_without_declared_fill(tmp_path):
    """Old CDS layout packing whose fill (-32767) is not declared: it unpacks to a plausible-looking number."""
    p = tmp_path / "packed.nc"
    with netCDF4.Dataset(p, "w", format="NETCDF3_64BIT_OFFSET") as nc:
        for d, n in (("longitude", 4), ("latitude", 3), ("time", 2)):
            nc.createDimension(d, n)
        nc.createVariable("longitude", "f4", ("longitude",))[:] = [0, 90, 180, 270]
        nc.createVariable("latitude", "f4", ("latitude",))[:] = [45, 0, -45]
        t = nc.createVariable("time", "i4", ("time",))
        t.units, t.calendar = "hours since 1900-01-01 00:00:00.0", "gregorian"
        t[:] = [876576, 877320]  # 2000-01, 2000-02
        x = nc.createVariable("t2m", "i2", ("time", "latitude", "longitude"))
        x.scale_factor, x.add_offset, x.units = 0.002, 270.0, "K"
        x.set_auto_maskandscale(False)
        raw = np.full((2, 3, 4), 1000, np.int16)
        raw[1, 0, :2] = -32767
        x[:] = raw
    with pytest.raises(InputFileError, match=r"packed\.nc: variable 't2m': .*found 2 of 24 values equal to the fill "
                                             r"sentinel 204\.466 K"):
        open_era5(p)


# ---------------------------------------------------------------------------------------------- magnitude
def test_value_outside_physical_bounds(tmp_path):
    vals = era5b.field("sp", era5b.months("2000-01", N)) * 100  # no unit explains it
    with pytest.raises(InputFileError, match=r"sp\.nc: variable 'sp': expected values in \[40000, 110000\] Pa "
                                             r"\(surface pressure\); found values in \[9\.00\d+e\+06, 9\.0\d+e\+06\] Pa, "
                                             r"read as 'Pa'\. the file holds another quantity"):
        open_era5(_era5(tmp_path, "sp", vals, "Pa"))


def test_typical_magnitude_tp_monthly_totals(tmp_path):
    """Monthly totals in m labelled 'm' (read as m/day): inside [0, 300] mm/day, but a 99th percentile of ~90."""
    rate = np.random.default_rng(0).uniform(0.2, 3.0, _shape())  # mm/day, a dry region
    totals_m = rate * 30.44 / 1000
    with pytest.raises(InputFileError, match=r"tp\.nc: variable 'tp': expected a 99th percentile in \[-0\.1, 60\] "
                                             r"mm day-1 \(monthly-mean precipitation rate\); found 9\d\.\d+ \(values in "
                                             r".*read as 'm'\. The unit label 'm' contradicts the magnitude: the "
                                             r"values fit if they are monthly totals"):
        open_era5(_era5(tmp_path, "tp", totals_m, "m"))
    (tmp_path / "ok").mkdir()
    open_era5(_era5(tmp_path / "ok", "tp", rate / 1000, "m"))  # the same rates as daily means: accepted


# ---------------------------------------------------------------------------------------------- unit label
def test_mascon_metres_labelled_cm(tmp_path):
    """Values in metres still labelled cm (100x too small): the spread says which unit the magnitude suggests."""
    p = _mascon(tmp_path, SEASON_CM / 100)
    with pytest.raises(InputFileError, match=r"jpl\.nc: variable 'lwe_thickness': expected a robust spread \(95th "
                                             r"minus 5th percentile\) in \[5, 2000\] mm \(TWSA.*found 2\.\d+ .*read as "
                                             r"'cm'\. The unit label 'cm' contradicts the magnitude: the values fit if "
                                             r"they are in 'm' \(100 x the values 'cm' implies\)"):
        open_mascon(p, "jpl")


def test_mascon_mm_labelled_m(tmp_path):
    p = _mascon(tmp_path, SEASON_CM * 10, units="m")  # mm labelled m: 1000x too large
    with pytest.raises(InputFileError, match=r"expected values in \[-10000, 10000\] mm.*contradicts the magnitude.*"
                                             r"in 'mm' \(0\.001 x"):
        open_mascon(p, "jpl")


def test_celsius_labelled_kelvin_and_lai_times_ten(tmp_path):
    vals = era5b.field("t2m", era5b.months("2000-01", N)) - 273.15
    with pytest.raises(InputFileError, match=r"t2m\.nc: variable 't2m': expected values in \[170, 340\] K.*found "
                                             r"values in \[-23.*degrees Celsius labelled 'K'"):
        open_era5(_era5(tmp_path, "t2m", vals, "K", extra=()))
    stamps = vegb.mid_months("1982-01", N)
    lai10 = np.random.default_rng(1).uniform(0, 70, (N, 4, 4))
    p = vegb.write_monthly(tmp_path / "lai.nc", "LAI", "m2 m-2", stamps, values=lai10)
    with pytest.raises(InputFileError, match=r"lai\.nc: variable 'LAI': expected values in \[-1, 15\] m2 m-2 "
                                             r"\(leaf area index\).*LAI x10"):
        open_lai(p)
    sif = vegb.write_monthly(tmp_path / "sif.nc", "SIF", "mW m-2 nm-1 sr-1", stamps, values=lai10 * 1000)
    with pytest.raises(InputFileError, match=r"sif\.nc: variable 'SIF': expected values in \[-2, 5\]"):
        open_sif(sif)


# ---------------------------------------------------------------------------------------------- no false positive
TWIN = {"start": "2004-01", "end": "2009-12", "progress": False}  # the shortest record the twin allows


@pytest.fixture(scope="module")
def twin_dir(tmp_path_factory):
    from gtws_dl.grid import Grid
    from gtws_dl.twin import generate

    out = tmp_path_factory.mktemp("twin")
    generate(out, Grid(30.0), **TWIN)
    return out


@pytest.mark.parametrize("layout", ["new", "old"])
def test_clean_twin_files_pass(tmp_path, twin_dir, layout):
    """No false positive: every file the twin writes (both ERA5 layouts) passes every check."""
    from gtws_dl.grid import Grid
    from gtws_dl.twin import generate

    if layout == "old":
        generate(tmp_path, Grid(30.0), era5_layout="old", era5_per_year=False, **TWIN)
    else:
        tmp_path = twin_dir
    ds = open_era5(tmp_path / "era5")
    assert len(ds.data_vars) == 13
    for centre, pat in (("jpl", "GRCTellus.JPL.*"), ("csr", "CSR_*"), ("gsfc", "gsfc.glb_*")):
        (path,) = glob.glob(str(tmp_path / "grace" / pat))
        open_mascon(path, centre)
    open_lai(tmp_path / "lai.nc")
    open_sif(tmp_path / "sif.nc")
    open_landcover(tmp_path / "landcover.nc")


# ---------------------------------------------------------------------------------------------- bypass
def test_bypass_key_waives_logs_and_lands_in_the_manifest(tmp_path, twin_dir, caplog):
    from hydra import compose, initialize_config_dir

    from gtws_dl.config import conf_dir
    from gtws_dl.cube.build import CubeBuilder
    from gtws_dl.grid import Grid
    from gtws_dl.ingest import spec_from

    twin = shutil.copytree(twin_dir, tmp_path / "twin")
    (csr,) = glob.glob(str(twin / "grace" / "CSR_*"))
    with netCDF4.Dataset(csr, "a") as nc:  # NaN-filled float32: -99999 is an undeclared sentinel
        x = nc["lwe_thickness"]
        a = np.asarray(x[:].filled(np.nan) if np.ma.isMaskedArray(x[:]) else x[:])
        a[0, 0, 0] = -99999.0
        x[:] = a

    def cfg(*extra):
        with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
            return compose("ingest", overrides=[f"paths.output_dir={tmp_path}", f"paths.twin_dir={twin}",
                                                "grid.res=30", "data=twin", *extra])

    spec = spec_from(cfg())
    assert tuple(spec.plausibility_skip) == ()
    with pytest.raises(InputFileError, match=r"CSR_GRACE.*'lwe_thickness'.*-99999 cm.*data\.plausibility\.skip="
                                             r"\[lwe_thickness\]"):
        CubeBuilder(spec, Grid(30.0), tmp_path / "cube").build(progress=False)
    assert not (tmp_path / "cube" / "manifest.json").exists()

    spec = spec_from(cfg("data.plausibility.skip=[lwe_thickness]"))
    assert tuple(spec.plausibility_skip) == ("lwe_thickness",)
    with caplog.at_level(logging.WARNING, logger="gtws_dl"):
        man = CubeBuilder(spec, Grid(30.0), tmp_path / "cube").build(progress=False)
    assert "waived by data.plausibility.skip" in caplog.text and "-99999" in caplog.text
    on_disk = json.loads((tmp_path / "cube" / "manifest.json").read_text())
    for m in (man, on_disk):
        assert m["plausibility"]["skip"] == ["lwe_thickness"]
        (w,) = m["plausibility"]["waived"]
        assert w["variable"] == "lwe_thickness" and "-99999" in w["finding"] and "CSR_GRACE" in w["files"]


def test_skip_names_are_validated():
    assert Policy.from_names(["TP", "all"]).skip == ("tp", "all")
    assert Policy.from_names(["lai"]).skips("LAI")
    with pytest.raises(ValueError, match=r"config key data\.plausibility\.skip: unknown variable 'tpp'; expected "
                                         r"'all' or names of \['t2m'.*e\.g\. data\.plausibility\.skip=\[tp\]"):
        Policy.from_names(["tpp"])


# ---------------------------------------------------------------------------------------------- one file of many
def test_one_yearly_file_in_other_units_is_named_even_where_the_record_would_pass(tmp_path, twin_dir):
    """The 2007 file of a 2004-2009 record holds tp as monthly totals (30.44x) under the same label: refused
    naming that file alone (each file is judged by itself, as well as the record together)."""
    era5 = tmp_path / "era5"
    shutil.copytree(twin_dir / "era5", era5)
    files = sorted(era5.glob("*.nc"))  # the new CDS layout: a file per year and step type
    (bad,) = [f for f in files if "2007" in f.name and "avgad" in f.name]  # avgad: the accumulations (tp, e, ...)
    with netCDF4.Dataset(bad, "a") as nc:
        nc["tp"][:] = nc["tp"][:] * 30.44
    with pytest.raises(InputFileError) as info:
        open_era5(era5)
    msg = str(info.value)
    assert bad.name in msg and not any(f.name in msg for f in files if f != bad), msg
    assert "monthly totals" in msg and "99th percentile" in msg


def test_histogram_percentiles_use_every_value_to_within_a_tenth_of_a_percent():
    """The percentiles come from a histogram of every value (no sample): within 0.1 % of numpy's on mixed signs,
    zeros and a few extremes, also after a linear change of units; merging pieces equals one pass."""
    from gtws_dl.io.plausibility import Summary, _Accumulator, _percentiles

    rng = np.random.default_rng(1)
    x = np.concatenate([rng.lognormal(0, 2, 300_000), -rng.lognormal(-1, 1, 50_000), np.zeros(20_000),
                        [1e9, -1e9]])
    rng.shuffle(x)
    whole = _Accumulator(x.shape, path="a", encoding={})
    whole.add(x)
    a, b = _Accumulator(x.shape, path="a", encoding={}), _Accumulator(x.shape, path="b", encoding={})
    a.add(x[:123_457])
    b.add(x[123_457:])
    merged, one = Summary.merge([a.result(), b.result()]), whole.result()
    np.testing.assert_array_equal(merged.bins, one.bins)
    np.testing.assert_array_equal(merged.counts, one.counts)
    assert one.counts.sum() == x.size
    qs = [1, 5, 50, 95, 99, 99.9]
    for scale, offset in ((1.0, 0.0), (1000.0, 0.0), (1.0, -273.15), (-2.0, 5.0)):
        got = _percentiles(*one.values(scale, offset), qs)
        want = np.percentile(x * scale + offset, qs, method="inverted_cdf")
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=abs(offset) * 1e-3 + 1e-12)
