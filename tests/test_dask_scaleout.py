"""Ingest and post-processing kernels run on a dask.distributed LocalCluster and match the eager results."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from gtws_dl.grid import Grid
from gtws_dl.io.regrid import regrid_conservative
from gtws_dl.post.lazy import detrend_deseasonalize_lazy
from gtws_dl.post.series import regional_series
from gtws_dl.seasonal import decimal_year, detrend_deseasonalize

distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client():
    # the nanny sets OMP/MKL/OPENBLAS_NUM_THREADS=1 in this process's environment for its workers: restored
    # after, or every later subprocess (the kill/resume tests' children) would run torch on one thread
    env = dict(os.environ)
    try:
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as cluster, distributed.Client(cluster) as c:
            yield c
    finally:
        os.environ.clear()
        os.environ.update(env)


def _field(nt=96, res=5.0, seed=0):
    g = Grid(res)
    times = pd.date_range("2000-01", periods=nt, freq="MS")
    rng = np.random.default_rng(seed)
    t = decimal_year(times)[:, None, None]
    y = 3.0 * (t - 2004) + 20 * np.sin(2 * np.pi * t + g.lat[None, :, None] / 30) + rng.normal(0, 1, (nt, *g.shape))
    y[:, :3] = np.nan  # a polar band without data
    return g, xr.DataArray(y.astype(np.float32), dims=("time", "lat", "lon"),
                           coords={"time": times, "lat": g.lat, "lon": g.lon})


def test_decomposition_on_the_cluster_matches_numpy(client):
    g, da = _field()
    lazy = detrend_deseasonalize_lazy(da.chunk({"lat": 9}), lat_chunk=9)
    assert lazy.chunks is not None  # nothing computed yet
    got = client.compute(lazy).result().values
    want = detrend_deseasonalize(da.values, decimal_year(da["time"].values))
    np.testing.assert_allclose(got, want, atol=1e-4, equal_nan=True)
    assert np.nanstd(got) < 1.5  # trend and seasonal cycle are gone, the unit-variance noise remains


def test_regridding_and_regional_series_stream_from_dask(client):
    g, da = _field(res=1.0, nt=24)
    lazy = da.chunk({"time": 6})
    coarse = regrid_conservative(lazy, Grid(5.0))
    assert coarse.chunks is not None
    got = client.compute(coarse).result()
    want = regrid_conservative(da, Grid(5.0))
    np.testing.assert_allclose(got.values, want.values, rtol=1e-6, equal_nan=True)
    g5 = Grid(5.0)
    masks = {"band": np.abs(g5.lat)[:, None].repeat(g5.nlon, 1) < 30}
    s_lazy = regional_series(coarse, g5.cell_area(), masks, chunk=6)
    s_eager = regional_series(want, g5.cell_area(), masks)
    np.testing.assert_allclose(s_lazy["band_Gt"], s_eager["band_Gt"], rtol=1e-6)
