"""Regional series: analytic area-weighted means, Gt conversion, Excel workbook."""

import numpy as np
import openpyxl
import pandas as pd
import pytest

from gtws_dl.grid import EARTH_RADIUS_M, Grid
from gtws_dl.post.series import regional_series, write_series_xlsx

TIMES = np.arange("2002-01", "2002-04", dtype="datetime64[M]").astype("datetime64[ns]")


def _band_mean_lat(p1, p2):
    """Area-weighted mean latitude (deg) of the band [p1, p2] (deg): ∫φ cosφ dφ / ∫cosφ dφ."""
    a, b = np.deg2rad(p1), np.deg2rad(p2)
    return np.rad2deg((b * np.sin(b) + np.cos(b) - a * np.sin(a) - np.cos(a)) / (np.sin(b) - np.sin(a)))


def test_mean_of_latitude_field_is_analytic():
    grid = Grid(5.0)
    lb = grid.lat_bounds
    cell_lat = _band_mean_lat(lb[:, 0], lb[:, 1])  # each cell holds its own area-mean latitude
    field = np.repeat(cell_lat[:, None], grid.nlon, 1)[None].repeat(len(TIMES), 0)
    lat2d = np.repeat(grid.lat[:, None], grid.nlon, 1)
    masks = {"band": (lat2d > 10) & (lat2d < 60), "globe": np.ones(grid.shape, bool)}
    df = regional_series(field, grid.cell_area(), masks, times=TIMES)
    np.testing.assert_allclose(df["band_mm"], _band_mean_lat(10, 60), rtol=1e-12)
    np.testing.assert_allclose(df["globe_mm"], 0.0, atol=1e-12)
    assert list(df["time"]) == ["2002-01", "2002-02", "2002-03"]
    assert df.index[0] == pd.Timestamp("2002-01-01")


def test_gt_of_uniform_mm_and_nan_handling():
    grid = Grid(10.0)
    field = np.ones((len(TIMES),) + grid.shape)
    field[1, :, :18] = np.nan  # half the globe missing in month 2
    field[2] = np.nan
    df = regional_series(field, grid.cell_area(), {"globe": np.ones(grid.shape, bool)}, times=TIMES)
    expect_gt = 4 * np.pi * EARTH_RADIUS_M**2 * 1e-3 * 1000 / 1e12  # 1 mm = 1e-3 m3/m2 = 1 kg/m2
    np.testing.assert_allclose(df["globe_Gt"].iloc[:2], expect_gt, rtol=1e-12)  # mean over valid, full area
    assert np.isnan(df["globe_mm"].iloc[2]) and np.isnan(df["globe_Gt"].iloc[2])
    half = regional_series(field, grid.cell_area(), {"g": np.ones(grid.shape, bool)}, times=TIMES,
                           land_fraction=np.full(grid.shape, 0.5))  # fmt: skip
    np.testing.assert_allclose(half["g_Gt"].iloc[0], expect_gt / 2, rtol=1e-12)


def test_series_validation():
    grid = Grid(10.0)
    with pytest.raises(ValueError, match=r"twsa has shape \(3, 2, 2\) and cell_area \(18, 36\)"):
        regional_series(np.ones((3, 2, 2)), grid.cell_area(), {}, times=TIMES)
    with pytest.raises(ValueError, match=r"mask 'x' has shape \(2,\), expected \(18, 36\)"):
        regional_series(np.ones((3, 18, 36)), grid.cell_area(), {"x": np.ones(2, bool)}, times=TIMES)


def test_xlsx_round_trip(tmp_path):
    grid = Grid(30.0)
    df = regional_series(np.arange(3 * 72, dtype=float).reshape(3, 6, 12), grid.cell_area(),
                         {"global_land": np.ones(grid.shape, bool)}, times=TIMES)  # fmt: skip
    path = write_series_xlsx({"jpl": df, "csr": df * 1}, tmp_path / "series.xlsx",
                             readme={"units": "mm; Gt", "version": "0.1.0"})  # fmt: skip
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["README", "jpl", "csr"]
    assert all(wb[s].freeze_panes == "A2" for s in wb.sheetnames)
    back = pd.read_excel(path, sheet_name="jpl")
    assert list(back.columns) == ["time", "global_land_mm", "global_land_Gt"]
    np.testing.assert_allclose(back["global_land_Gt"], df["global_land_Gt"], rtol=1e-12)
    assert not list(tmp_path.glob("*.tmp-*"))
    with pytest.raises(ValueError, match="invalid sheet names"):
        write_series_xlsx({"a/b": df}, tmp_path / "x.xlsx", readme=["x"])
