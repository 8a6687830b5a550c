"""Lengthen the time axis of a Zarr (v3) store written by xarray: every array along ``time`` and the coordinate.

Used by the monthly update (:mod:`gtws_dl.cube.extend`, :mod:`gtws_dl.recon_update`). Arrays are resized (the
new months read as the fill value, NaN, until written) and the ``time`` coordinate is encoded with the units and
calendar it already has, so ``xarray.open_zarr`` decodes the longer axis exactly as before.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import zarr
from xarray.coding.times import encode_cf_datetime


def extend_time(store, times: pd.DatetimeIndex) -> None:
    """Make the store's ``time`` axis ``times`` (its current months must be their start, unchanged).

    ``store``: a path or an open :class:`zarr.Group` (writable)."""
    group = store if isinstance(store, zarr.Group) else zarr.open_group(store, mode="r+")
    coord = group["time"]
    n_old, n_new = coord.shape[0], len(times)
    if n_new < n_old:
        raise ValueError(f"{group.store}: the time axis holds {n_old} months; cannot shorten it to {n_new}")
    units, calendar = coord.attrs.get("units"), coord.attrs.get("calendar", "proleptic_gregorian")
    num, _, _ = encode_cf_datetime(pd.DatetimeIndex(times).to_numpy("datetime64[ns]"), units, calendar,
                                   dtype=np.dtype(coord.dtype))
    old = np.asarray(coord[:])
    if not np.array_equal(old, np.asarray(num[:n_old], dtype=old.dtype)):
        raise ValueError(f"{group.store}: its first {n_old} months differ from the new axis' "
                         f"({pd.DatetimeIndex(times)[0]:%Y-%m} ..); the record does not continue")
    for name, arr in group.arrays():
        dims = list(arr.metadata.dimension_names or [])
        if name == "time" or "time" not in dims:
            continue
        shape = list(arr.shape)
        shape[dims.index("time")] = n_new
        arr.resize(tuple(shape))
    coord.resize((n_new,))
    coord[:] = np.asarray(num, dtype=coord.dtype)
