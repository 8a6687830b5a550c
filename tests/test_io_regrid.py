"""Conservative regridding: conservation, constants, refine/coarsen round trip, NaNs, node grids, dask."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from gtws_dl.grid import Grid
from gtws_dl.io.regrid import infer_bounds, regrid_conservative, to_canonical


def on_grid(grid: Grid, values: np.ndarray, ntime: int | None = None) -> xr.DataArray:
    if ntime is None:
        return xr.DataArray(values, dims=("lat", "lon"), coords={"lat": grid.lat, "lon": grid.lon})
    return xr.DataArray(
        values,
        dims=("time", "lat", "lon"),
        coords={"time": np.arange(ntime), "lat": grid.lat, "lon": grid.lon},
    )


def test_coarsening_quarter_to_two_degrees_conserves_area_integral():
    src, tgt = Grid(0.25), Grid(2.0)
    rng = np.random.default_rng(1)
    x = rng.gamma(2.0, 3.0, size=src.shape)
    y = regrid_conservative(on_grid(src, x), tgt)
    assert y.shape == tgt.shape and not np.isnan(y.values).any()
    i_src = np.sum(x * src.cell_area())
    i_tgt = np.sum(y.values * tgt.cell_area())
    assert i_tgt == pytest.approx(i_src, rel=1e-6)


def test_constant_stays_constant_and_refine_then_coarsen_is_identity():
    src, fine = Grid(2.0), Grid(0.5)
    const = regrid_conservative(on_grid(src, np.full(src.shape, 7.5)), fine)
    np.testing.assert_allclose(const.values, 7.5, rtol=1e-12)
    x = np.random.default_rng(2).normal(size=src.shape)
    up = regrid_conservative(on_grid(src, x), fine)
    # piecewise constant: each fine cell carries its coarse parent's value
    np.testing.assert_allclose(up.values[0, :4], x[0, 0])
    back = regrid_conservative(up, src)
    np.testing.assert_allclose(back.values, x, rtol=1e-10, atol=1e-12)


def test_nan_aware_with_min_valid():
    src, tgt = Grid(1.0, (0, 4, 0, 2)), Grid(2.0, (0, 4, 0, 2))
    x = np.array([[1.0, np.nan, 5.0, 5.0], [np.nan, np.nan, 5.0, np.nan]])
    y = regrid_conservative(on_grid(src, x), tgt)
    assert np.isnan(y.values[0, 0])  # 3/4 of the cell is NaN < 0.5 valid
    assert y.values[0, 1] == pytest.approx(5.0)  # 3/4 valid, all equal 5
    y2 = regrid_conservative(on_grid(src, x), tgt, min_valid=0.2)
    assert y2.values[0, 0] == pytest.approx(1.0)
    allnan = regrid_conservative(on_grid(src, np.full((2, 4), np.nan)), tgt, min_valid=0.0)
    assert np.isnan(allnan.values).all()


def test_node_registered_grid_to_cell_centres():
    # tiny ERA5-style node grid: 90..-90 every 30 deg (7 rows), 0..330 (12 columns)
    lat = np.arange(90, -91, -30.0)
    lon = np.arange(0, 360, 30.0)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    x = 10 + np.cos(np.deg2rad(lo)) + la / 90
    src = xr.DataArray(x, dims=("latitude", "longitude"), coords={"latitude": lat, "longitude": lon})
    tgt = Grid(30.0)
    y = regrid_conservative(src, tgt)
    assert y.dims == ("lat", "lon") and y.shape == (6, 12)
    # source areas: half-width polar cells, wrapped longitudes
    c = to_canonical(src)
    lb = infer_bounds(c.lat.values, clip=(-90, 90))
    assert lb[0, 0] == -90 and lb[0, 1] == -75 and lb[-1, 1] == 90
    band = np.sin(np.deg2rad(lb[:, 1])) - np.sin(np.deg2rad(lb[:, 0]))
    area_src = np.repeat(band[:, None], 12, axis=1) * np.deg2rad(30.0)
    i_src = np.sum(c.values * area_src)
    i_tgt = np.sum(y.values * tgt.cell_area()) / 6_371_008.8**2
    assert i_tgt == pytest.approx(i_src, rel=1e-12)
    ones = regrid_conservative(xr.ones_like(src), tgt)
    np.testing.assert_allclose(ones.values, 1.0)


def test_descending_lat_and_0_360_source_match_canonical_source():
    g = Grid(10.0)
    x = np.random.default_rng(3).normal(size=g.shape)
    canon = on_grid(g, x)
    messy = canon.assign_coords(lon=np.mod(canon.lon, 360)).sortby("lon").isel(lat=slice(None, None, -1))
    a = regrid_conservative(canon, Grid(30.0))
    b = regrid_conservative(messy, Grid(30.0))
    np.testing.assert_allclose(a.values, b.values, rtol=1e-12)


def test_dataset_with_dask_time_chunks_stays_lazy_and_keeps_other_vars():
    src, tgt = Grid(1.0), Grid(5.0)
    rng = np.random.default_rng(4)
    da = on_grid(src, rng.normal(size=(6, *src.shape)).astype(np.float32), ntime=6)
    ds = xr.Dataset({"a": da, "series": ("time", np.arange(6.0))}).chunk({"time": 2})
    out = regrid_conservative(ds, tgt)
    assert out["a"].chunks is not None and out["a"].dtype == np.float32
    eager = regrid_conservative(da, tgt)
    np.testing.assert_allclose(out["a"].values, eager.values, rtol=1e-6)
    np.testing.assert_array_equal(out["series"].values, np.arange(6.0))
    assert out["a"].dims == ("time", "lat", "lon")
