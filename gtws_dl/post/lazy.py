"""Out-of-core post-processing with dask: the same numpy kernels, applied band by band.

At 0.25° a product holds ~1,000 months × 720 × 1440 cells (4 GB per field in float32), more than the
post-processing should hold at once. Open it with dask chunks (``xr.open_dataset(..., chunks={"lat": 60})``
or a Zarr product) and use these functions; under a ``dask.distributed`` client (``LocalCluster`` or a
cluster scheduler) the bands run on its workers.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from gtws_dl.seasonal import decimal_year, detrend_deseasonalize


def _residual_last_axis(y: np.ndarray, t: np.ndarray, kwargs: dict) -> np.ndarray:
    # apply_ufunc puts the core dim (time) last; the kernel wants it first
    out = detrend_deseasonalize(np.moveaxis(y, -1, 0), t, **kwargs)
    return np.moveaxis(out, 0, -1).astype(np.float32)


def detrend_deseasonalize_lazy(twsa: xr.DataArray, *, lat_chunk: int = 60, **kwargs) -> xr.DataArray:
    """Residual of :func:`gtws_dl.seasonal.decompose` per cell, computed in latitude bands.

    Parameters
    ----------
    twsa : (time, lat, lon) mm, numpy- or dask-backed
    lat_chunk : latitude rows per task (memory per task ≈ time × lat_chunk × lon × 8 bytes × a few)
    kwargs : options of :func:`decompose` (fit_period, trend, seasonal, n_harmonics, ...)

    Returns
    -------
    Lazy DataArray, same dims and coordinates, float32 mm.
    """
    t = decimal_year(twsa["time"].values)
    da = twsa.chunk({"time": -1, "lat": lat_chunk, "lon": -1})
    out = xr.apply_ufunc(
        _residual_last_axis, da, kwargs={"t": t, "kwargs": kwargs},
        input_core_dims=[["time"]], output_core_dims=[["time"]],
        dask="parallelized", output_dtypes=[np.float32],
    )
    return out.transpose(*twsa.dims).assign_attrs(twsa.attrs)
