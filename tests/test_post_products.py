"""CF product files: compliance-checker clean, coordinates and values round-trip."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gtws_dl.grid import Grid
from gtws_dl.post.products import read_product, write_twsa_product

GRID = Grid(30.0)
TIMES = np.arange("2002-01", "2003-03", dtype="datetime64[M]").astype("datetime64[ns]")
LAND = np.zeros(GRID.shape, bool)
LAND[3:6, 2:9] = True
DATA = (np.arange(len(TIMES))[:, None, None] + 0.01 * GRID.lat[:, None] + 1e-4 * GRID.lon).astype(np.float32)
ATTRS = {"code_version": "0.1.0", "target_centre": "jpl", "training_period": "2002-04/2016-12",
         "anomaly_baseline": "2004-01/2009-12", "predictors": ["t2m", "tp"], "config": {"model": "unet"}}  # fmt: skip


def _checker() -> str:
    exe = Path(sys.executable).with_name("compliance-checker")
    found = str(exe) if exe.exists() else shutil.which("compliance-checker")
    assert found, "compliance-checker not installed (dev extra)"
    return found


@pytest.mark.parametrize("units", ["mm", "kg m-2"])
def test_cf_compliance_no_failures(tmp_path, units):
    path = write_twsa_product(tmp_path / "p.nc", DATA, grid=GRID, times=TIMES, land_mask=LAND,
                              cell_area=GRID.cell_area(), attrs=ATTRS, twsa_std=np.abs(DATA),
                              zarr_copy=False, units=units)  # fmt: skip
    out = tmp_path / "cf.json"
    subprocess.run([_checker(), "--test=cf:1.8", "-f", "json", "-o", str(out), str(path)], check=False,
                   capture_output=True)  # fmt: skip
    report = json.loads(out.read_text())["cf:1.8"]
    failed = [(p, r["name"], r["msgs"]) for p in ("high_priorities", "medium_priorities")
              for r in report[p] if r["value"][0] < r["value"][1]]  # fmt: skip
    assert report["high_count"] == 0 and not failed, failed


def test_round_trip_netcdf_and_zarr(tmp_path):
    path = write_twsa_product(tmp_path / "prod.nc", DATA, grid=GRID, times=TIMES, land_mask=LAND,
                              cell_area=GRID.cell_area(), attrs=ATTRS)  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prod.nc", "prod.zarr"]
    for p in (path, tmp_path / "prod.zarr"):
        ds = read_product(p)
        np.testing.assert_array_equal(ds["lat"], GRID.lat)
        np.testing.assert_array_equal(ds["lon"], GRID.lon)
        assert ds["lon"].min() > -180 and ds["lon"].max() < 180 and (np.diff(ds["lat"]) > 0).all()
        tw = ds["twsa"].values
        assert tw.dtype == np.float32 and ds["twsa"].attrs["units"] == "mm"
        np.testing.assert_array_equal(tw[:, LAND], DATA[:, LAND])
        assert np.isnan(tw[:, ~LAND]).all()
        assert pd.Timestamp(ds["time"].values[0]) == pd.Timestamp("2002-01-16T12:00")
        assert pd.Timestamp(ds["time"].values[1]) == pd.Timestamp("2002-02-15")
        bnds = ds["time_bnds"].values
        np.testing.assert_array_equal(bnds[:, 0], TIMES)
        assert pd.Timestamp(bnds[-1, 1]) == pd.Timestamp("2003-03-01")
        np.testing.assert_array_equal(ds["lat_bnds"].values, GRID.lat_bounds)
        assert ds.attrs["Conventions"] == "CF-1.8" and ds.attrs["target_centre"] == "jpl"
        assert "10.5194/essd-15-5597-2023" in ds.attrs["references"]
        assert json.loads(ds.attrs["config"]) == {"model": "unet"}
        ds.close()
    # rewrite over an existing product is atomic and leaves no temporaries
    write_twsa_product(
        path, DATA + 1, grid=GRID, times=TIMES, land_mask=LAND, cell_area=GRID.cell_area(), attrs={}
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prod.nc", "prod.zarr"]
    with read_product(tmp_path / "prod.zarr") as ds:
        np.testing.assert_array_equal(ds["twsa"].values[:, LAND], DATA[:, LAND] + 1)


def test_product_validation(tmp_path):
    with pytest.raises(
        ValueError, match=r"twsa has shape \(14, 2, 2\), expected \(time, nlat, nlon\) = \(14, 6, 12\)"
    ):
        write_twsa_product(tmp_path / "x.nc", np.ones((14, 2, 2)), grid=GRID, times=TIMES, land_mask=LAND,
                           cell_area=GRID.cell_area(), attrs={})  # fmt: skip
    assert not list(tmp_path.iterdir())
