"""Identity and content of input files (issue 17): one file per single-file input, mascon files checked against
the centre they are given as, and files that are not NetCDF refused with the right advice. Every file is built in
``tmp_path`` in the real layouts (the twin's writers, the reader tests' builders)."""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import zipfile
from pathlib import Path

import netCDF4
import numpy as np
import pytest

from gtws_dl.grid import Grid
from gtws_dl.io._common import resolve_one
from gtws_dl.io.era5 import open_era5
from gtws_dl.io.errors import InputFileError
from gtws_dl.io.mascon import check_centre, open_mascon
from gtws_dl.twin import grace as gr
from gtws_dl.twin.writers import write_mascon

pytestmark = pytest.mark.reliability

GRID = Grid(30.0)
MONTHS = np.arange(np.datetime64("2004-01"), np.datetime64("2004-07"))


def twin_mascon(folder: Path, centre: str, months=MONTHS) -> Path:
    """One centre's mascon file exactly as the twin Earth writes it (name, layout, global attributes)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmid, tb = gr.time_coords(months)
    lwe = np.arange(len(months))[:, None, None] + 0.01 * np.arange(np.prod(GRID.shape)).reshape(GRID.shape)  # a field
    return write_mascon(folder, centre, GRID, months, tmid, tb, lwe, [], time_last=(centre == "gsfc"))


def era5_builders():
    import test_io_era5 as era5

    return era5


@pytest.fixture(scope="module")
def twin_files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("grace")
    return {c: twin_mascon(d, c) for c in ("jpl", "csr", "gsfc")}


def strip_identity(path: Path) -> Path:
    """Remove the centre-naming global attributes (a file from another source)."""
    with netCDF4.Dataset(path, "a") as nc:
        for k in ("title", "institution", "source"):
            if k in nc.ncattrs():
                nc.delncattr(k)
    return path


# ----------------------------------------------------------------------------- (a) one file per single input
def test_glob_matching_two_jpl_releases_is_refused(tmp_path):
    twin_mascon(tmp_path, "jpl", MONTHS)
    twin_mascon(tmp_path, "jpl", MONTHS[:4])  # an older release beside the new one
    with pytest.raises(InputFileError, match=r"GRACE jpl \(data\.grace\.jpl\): expected one file; found 2 files "
                       r"matching .*GRCTellus\.JPL\.\*\.nc.*GRCTellus\.JPL\.200401_200404.*GRCTellus\.JPL\.200401_200406"
                       r".*Set data\.grace\.jpl to the path of the one file"):
        resolve_one(str(tmp_path / "GRCTellus.JPL.*.nc"), what="GRACE jpl (data.grace.jpl)")


def test_folder_holding_two_centres_given_for_one_is_refused_by_the_cube_builder(tmp_path):
    from gtws_dl.cube.build import CubeBuilder, CubeSpec

    twin_mascon(tmp_path / "grace", "jpl")
    twin_mascon(tmp_path / "grace", "csr")
    spec = CubeSpec(era5=str(tmp_path / "grace"), grace={"jpl": str(tmp_path / "grace")})
    with pytest.raises(InputFileError, match=r"GRACE jpl \(data\.grace\.jpl\): expected one file; found 2 files.*"
                       r"CSR_GRACE.*GRCTellus\.JPL.*Set data\.grace\.jpl"):
        CubeBuilder(spec, GRID, tmp_path / "cube")._input_files()
    assert not (tmp_path / "cube").exists()


def test_lai_glob_matching_two_files_is_refused(tmp_path):
    from gtws_dl.cube.build import CubeBuilder, CubeSpec

    era5 = era5_builders()
    era5.write_new(tmp_path / "e.nc", ["t2m"], era5.months())
    jpl = twin_mascon(tmp_path, "jpl")
    (tmp_path / "lai_v1.nc").write_bytes(b"x")
    (tmp_path / "lai_v2.nc").write_bytes(b"x")
    spec = CubeSpec(era5=str(tmp_path / "e.nc"), grace={"jpl": str(jpl)}, lai=str(tmp_path / "lai_*.nc"))
    with pytest.raises(InputFileError, match=r"lai \(data\.lai\): expected one file; found 2 files.*lai_v1\.nc.*"
                       r"lai_v2\.nc.*Set data\.lai"):
        CubeBuilder(spec, GRID, tmp_path / "cube")._input_files()


def test_era5_keeps_many_files_and_a_single_match_passes(tmp_path, twin_files):
    from gtws_dl.cube.build import CubeBuilder, CubeSpec

    era5 = era5_builders()
    era5.write_new(tmp_path / "a.nc", ["t2m"], era5.months())
    era5.write_new(tmp_path / "b.nc", ["tp"], era5.months())
    spec = CubeSpec(era5=str(tmp_path), grace={c: str(p) for c, p in twin_files.items()})
    files = CubeBuilder(spec, GRID, tmp_path / "cube")._input_files()
    assert len(files["era5"]) == 2 and all(len(files[f"grace_{c}"]) == 1 for c in twin_files)


# ------------------------------------------------------------------------------------ (b) mascon identity
def test_clean_twin_files_of_all_three_centres_pass_identity(twin_files, caplog):
    with caplog.at_level(logging.WARNING, logger="gtws_dl.io.mascon"):
        for centre, path in twin_files.items():
            da = open_mascon(path, centre, baseline=None)
            assert da.attrs["centre"] == centre and da.sizes["time"] == len(MONTHS)
    assert not [r for r in caplog.records if r.name == "gtws_dl.io.mascon"], "clean twin files need no warning"


def test_csr_file_given_as_jpl_is_refused(twin_files):
    with pytest.raises(InputFileError, match=r"CSR_GRACE_GRACE-FO_RL0603_Mascons_all-corrections\.nc: expected the "
                       r"JPL mascon product \(given as data\.grace\.jpl\); found a CSR file according to its metadata "
                       r"\(title='CSR GRACE.*institution='The University of Texas - Center for Space Research \(CSR\)'"
                       r"\)\. point data\.grace\.jpl at the JPL file; give it as data\.grace\.csr instead"):
        open_mascon(twin_files["csr"], "jpl")


@pytest.mark.parametrize("given, other", [("jpl", "gsfc"), ("gsfc", "jpl")])
def test_two_centres_swapped_are_both_refused(twin_files, given, other):
    label = {"jpl": "JPL", "gsfc": "GSFC"}
    with pytest.raises(InputFileError, match=rf"expected the {label[given]} mascon product \(given as data\.grace\."
                       rf"{given}\); found a {label[other]} file according to its metadata.*point data\.grace\.{given} "
                       rf"at the {label[given]} file; give it as data\.grace\.{other} instead"):
        open_mascon(twin_files[other], given)


def test_renamed_csr_file_is_known_by_its_metadata(twin_files, tmp_path):
    renamed = shutil.copy(twin_files["csr"], tmp_path / "GRCTellus.JPL.200401_200406.GLO.RL06.3M.MSCNv04CRI.nc")
    with pytest.raises(InputFileError, match=r"GRCTellus\.JPL\..*: expected the JPL mascon product.*found a CSR file "
                       r"according to its metadata"):
        open_mascon(renamed, "jpl")


def test_file_without_metadata_is_known_by_its_real_product_name(twin_files, tmp_path):
    bare = strip_identity(Path(shutil.copy(twin_files["jpl"], tmp_path / twin_files["jpl"].name)))
    with pytest.raises(InputFileError, match=r"expected the CSR mascon product \(given as data\.grace\.csr\); found a "
                       r"JPL file according to its name \(GRCTellus\.JPL\..*its attributes name no centre\)\. point "
                       r"data\.grace\.csr at the CSR file; give it as data\.grace\.jpl instead"):
        open_mascon(bare, "csr")


def test_file_naming_no_centre_is_accepted_with_a_warning(twin_files, tmp_path, caplog):
    other = strip_identity(Path(shutil.copy(twin_files["csr"], tmp_path / "tws_mascons_regridded.nc")))
    with caplog.at_level(logging.WARNING, logger="gtws_dl.io.mascon"):
        da = open_mascon(other, "csr", baseline=None)
    assert da.sizes["time"] == len(MONTHS)
    assert any("neither its metadata nor its file name names a GRACE centre; read as CSR" in r.getMessage()
               for r in caplog.records)


def test_check_centre_reads_real_institution_spellings():
    import xarray as xr

    ds = xr.Dataset(attrs={"institution": "NASA Jet Propulsion Laboratory"})
    check_centre(ds, "x.nc", "jpl")
    with pytest.raises(InputFileError, match=r"found a JPL file according to its metadata"):
        check_centre(ds, "x.nc", "gsfc")
    check_centre(xr.Dataset(attrs={"institution": "NASA Goddard Space Flight Center"}), "g.nc", "gsfc")
    with pytest.raises(InputFileError, match=r"found a GFZ file.*point data\.grace\.csr at the CSR file$"):
        check_centre(xr.Dataset(attrs={"title": "GFZ RL06 mascons"}), "g.nc", "csr")


# --------------------------------------------------------------------------------------- content sniffing
def _era5_dir_with(tmp_path: Path, name: str, content: bytes) -> Path:
    d = tmp_path / "era5"
    d.mkdir()
    (d / name).write_bytes(content)
    return d


def test_grib_saved_as_nc(tmp_path):
    d = _era5_dir_with(tmp_path, "download.nc", b"GRIB\x00\x01\x2c\x02" + bytes(range(256)) * 4 + b"7777")
    with pytest.raises(InputFileError, match=r"download\.nc: expected a NetCDF file .*; found a GRIB file, which "
                       r"cannot be opened as NetCDF\. request NetCDF from the CDS \(data_format: netcdf\) or convert "
                       r"with cfgrib/grib_to_netcdf"):
        open_era5(d, ["t2m"])


def test_unextracted_cds_zip(tmp_path):
    era5 = era5_builders()
    inner = era5.write_new(tmp_path / "data_stream-moda_stepType-avgua.nc", ["t2m"], era5.months())
    d = tmp_path / "era5"
    d.mkdir()
    with zipfile.ZipFile(d / "download.nc", "w") as z:
        z.write(inner, inner.name)
    with pytest.raises(InputFileError, match=r"download\.nc: .*found a ZIP archive, which cannot be opened as "
                       r"NetCDF\. an unextracted CDS zip: unzip it and point data\.era5_dir at the \.nc files inside"):
        open_era5(d, ["t2m"])


def test_earthdata_login_page_saved_as_nc(tmp_path):
    page = tmp_path / "GRCTellus.JPL.200204_202412.GLO.RL06.3M.MSCNv04CRI.nc"
    page.write_text("<!DOCTYPE html>\n<html><head><title>Earthdata Login</title></head><body>...</body></html>\n")
    with pytest.raises(InputFileError, match=r"MSCNv04CRI\.nc: .*found a web page \(HTML\) starting '<!DOCTYPE "
                       r"html>'.*a web page or text saved as \.nc \(e\.g\. an Earthdata login page\): log in and "
                       r"download again"):
        open_mascon(page, "jpl")


def test_plain_text_saved_as_nc(tmp_path):
    txt = tmp_path / "lai.nc"
    txt.write_text("Error 401: Unauthorized. Please provide valid credentials.\n" * 3)
    from gtws_dl.io.vegetation import open_lai

    with pytest.raises(InputFileError, match=r"lai\.nc: .*found text starting 'Error 401: Unauthorized.*log in and "
                       r"download again"):
        open_lai(txt)


def test_gzipped_netcdf(tmp_path, twin_files):
    gz = tmp_path / "CSR_GRACE_GRACE-FO_RL0603_Mascons_all-corrections.nc"
    gz.write_bytes(gzip.compress(twin_files["csr"].read_bytes()))
    with pytest.raises(InputFileError, match=r"found a gzip-compressed file, which cannot be opened as NetCDF\. "
                       r"decompress it \(gunzip\)"):
        open_mascon(gz, "csr")


def test_empty_file(tmp_path):
    d = _era5_dir_with(tmp_path, "e.nc", b"")
    with pytest.raises(InputFileError, match=r"e\.nc: expected a NetCDF file .*; found an empty file \(0 bytes\)\. "
                       r"an interrupted download or copy: download it again"):
        open_era5(d, ["t2m"])


def test_broken_symlink_names_its_missing_target(tmp_path):
    link = tmp_path / "jpl.nc"
    os.symlink(tmp_path / "gone" / "GRCTellus.JPL.nc", link)
    with pytest.raises(InputFileError, match=r"jpl\.nc: expected an existing NetCDF file; found a broken symbolic "
                       r"link to '.*gone/GRCTellus\.JPL\.nc' \(resolved: .*, which does not exist\)"):
        open_mascon(link, "jpl")


def _grouped(path: Path, groups: dict[str, list[str]]) -> Path:
    """A NetCDF4/HDF5 file with nothing at the root and mascon-layout variables in groups."""
    months = MONTHS[:2]
    tmid, tb = gr.time_coords(months)
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.institution = "NASA Goddard Space Flight Center"
        for gname, names in groups.items():
            g = nc.createGroup(gname)
            for dname, n in (("time", 2), ("lat", GRID.nlat), ("lon", GRID.nlon), ("bounds", 2)):
                g.createDimension(dname, n)
            t = g.createVariable("time", "f8", ("time",))
            t.units, t.calendar, t.bounds = gr.TIME_UNITS, "gregorian", "time_bounds"
            t[:] = tmid
            g.createVariable("time_bounds", "f8", ("time", "bounds"))[:] = tb
            g.createVariable("lat", "f8", ("lat",))[:] = GRID.lat
            g.createVariable("lon", "f8", ("lon",))[:] = GRID.lon
            for name in names:
                v = g.createVariable(name, "f4", ("time", "lat", "lon"))
                v.units = "cm"
                v[:] = np.random.default_rng(0).normal(0.0, 10.0, (2, *GRID.shape))  # cm, a plausible spread
    return path


def test_hdf5_with_groups_reads_the_one_group_holding_the_variable(tmp_path):
    p = _grouped(tmp_path / "gsfc.glb_.h5.nc", {"solution": ["lwe_thickness"], "meta": []})
    da = open_mascon(p, "gsfc", baseline=None)  # the root's institution is kept for the identity check
    assert da.sizes == {"time": 2, "lat": GRID.nlat, "lon": GRID.nlon} and np.isfinite(da.values).all()


def test_hdf5_with_groups_but_no_such_variable_names_the_groups(tmp_path):
    p = _grouped(tmp_path / "native.h5", {"mascons": ["cmwe"], "uncertainty": ["sigma"]})
    with pytest.raises(InputFileError, match=r"native\.h5: variable 'lwe_thickness': expected the data at the file's "
                       r"root or in exactly one group; found no variable 'lwe_thickness' at the root \(\[\]\) nor in any "
                       r"group; groups: /mascons: \[.*'cmwe'.*\]; /uncertainty: \[.*'sigma'.*\]\. extract the group"):
        open_mascon(p, "gsfc")


def test_variable_in_two_groups_is_refused(tmp_path):
    p = _grouped(tmp_path / "two.nc", {"a": ["lwe_thickness"], "b": ["lwe_thickness"]})
    with pytest.raises(InputFileError, match=r"found variable 'lwe_thickness' in 2 groups, not at the root; groups: "
                       r"/a: .*; /b: "):
        open_mascon(p, "gsfc")


# -------------------------------------------------------------------------------------- ERA5 ensemble number
def _with_number(path: Path, n: int) -> Path:
    era5 = era5_builders()
    months = era5.months("2000-01", 2)
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("number", n)
        nc.createDimension("valid_time", 2)
        nc.createDimension("latitude", len(era5.LAT))
        nc.createDimension("longitude", len(era5.LON))
        num = nc.createVariable("number", "i8", ("number",))
        num.standard_name = "realization"
        num[:] = np.arange(n)
        t = nc.createVariable("valid_time", "i8", ("valid_time",))
        t.units, t.calendar = "seconds since 1970-01-01", "proleptic_gregorian"
        t[:] = [int((m - era5.datetime(1970, 1, 1)).total_seconds()) for m in months]
        nc.createVariable("latitude", "f8", ("latitude",))[:] = era5.LAT
        nc.createVariable("longitude", "f8", ("longitude",))[:] = era5.LON
        x = nc.createVariable("t2m", "f4", ("number", "valid_time", "latitude", "longitude"))
        x.units = "K"
        x[:] = np.broadcast_to(era5.field("t2m", months)[None], (n, 2, len(era5.LAT), len(era5.LON)))
    return path


def test_era5_ensemble_members_are_refused(tmp_path):
    p = _with_number(tmp_path / "ens.nc", 10)
    with pytest.raises(InputFileError, match=r"ens\.nc: expected one realisation per month .*; found an ensemble "
                       r"dimension 'number' of size 10 \(members \[0, 1, .*\]\)\. request a single member .* or "
                       r"average the members into the ensemble mean first"):
        open_era5(p, ["t2m"])


def test_era5_number_dimension_of_size_one_is_squeezed(tmp_path):
    era5 = era5_builders()
    ds = open_era5(_with_number(tmp_path / "one.nc", 1), ["t2m"])
    assert ds["t2m"].dims == ("time", "lat", "lon") and "number" not in ds.coords
    ref = era5.expected("t2m", era5.months("2000-01", 2), ds["lat"].values, ds["lon"].values)
    np.testing.assert_allclose(ds["t2m"].values, ref, rtol=1e-6)
