"""The numbers of a reconstruction's products, latitude band by latitude band (torch-free).

One owner for what a product holds, used by the full publication (:mod:`gtws_dl.post.publish`) and by the
monthly update's append (:mod:`gtws_dl.post.append`), so both write the same numbers:

* ``twsa`` — the reconstruction plus the storage change the forcing cannot explain (:mod:`gtws_dl.post.unforced`,
  fitted on the training months), re-referenced to the anomaly baseline;
* the detrended + deseasonalized residual of it, fitted over a fixed ``fit_period`` (null: the record's final,
  non-ERA5T months), so months added later are residuals of the same fit.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from gtws_dl.conventions import BASELINE
from gtws_dl.cube.store import _read_manifest_text, cube_member
from gtws_dl.post.unforced import DEFAULT_ONSET, DEFAULT_Z, check_mode, residual_trend, unforced_field
from gtws_dl.recon_store import open_finished
from gtws_dl.seasonal import decimal_year, detrend_deseasonalize

LOGGER = logging.getLogger(__name__)


def preliminary_flags(times: pd.DatetimeIndex, era5t_months: Sequence[str]) -> np.ndarray:
    """(time,) int8: 1 where the month is driven by preliminary ERA5T forcing (the cube's ``era5t_months``)."""
    return np.isin(times.strftime("%Y-%m"), list(era5t_months)).astype(np.int8)


def default_fit_period(times: pd.DatetimeIndex, preliminary: np.ndarray) -> tuple[str, str]:
    """The trend/seasonal fit period when ``products.decompose_period`` is null: the whole record of final
    (not preliminary) months, ``("YYYY-MM", "YYYY-MM")``."""
    final = times[np.asarray(preliminary) == 0]
    last = final[-1] if len(final) else times[-1]
    return f"{times[0]:%Y-%m}", f"{last:%Y-%m}"


def cube_manifest(cube_dir: str | Path) -> dict:
    """The cube's manifest, {} when it cannot be read."""
    try:
        text = _read_manifest_text(cube_dir)
        return json.loads(text) if text else {}
    except (OSError, ValueError):
        return {}


class ProductFields:
    """The products' numbers of the reconstruction ``recon_path`` (every centre), computed per latitude band.

    Parameters
    ----------
    recon_path, cube_dir : the reconstruction store and its cube (land mask, cell area, GRACE targets, ERA5T months)
    train_period : (first, last) training months: the fit of the unforced residual trend (None: not applied)
    products : the ``products`` config (``decompose_period``, ``n_harmonics``, ``unforced*``)
    baseline : the anomaly baseline (first, last month)
    """

    def __init__(self, recon_path: str | Path, cube_dir: str | Path, *, train_period: Sequence[str] | None,
                 products: Mapping | None = None, baseline: tuple[str, str] = BASELINE) -> None:
        products = dict(products or {})
        self.ds = open_finished(recon_path)
        static = xr.open_zarr(cube_member(cube_dir, "predictors.zarr"), consolidated=False)
        self.land = static["land_mask"].values.astype(bool)
        self.area = static["cell_area"].values
        self.times = pd.DatetimeIndex(self.ds["time"].values)
        self.t_years = decimal_year(self.times)
        end = pd.Timestamp(baseline[1]) + pd.offsets.MonthEnd(0)
        self.in_base = (self.times >= pd.Timestamp(baseline[0])) & (self.times <= end)
        self.cube_manifest = cube_manifest(cube_dir)
        self.preliminary = preliminary_flags(self.times, self.cube_manifest.get("era5t_months") or [])
        period = products.get("decompose_period")
        self.fit_period = tuple(str(p) for p in period) if period else default_fit_period(self.times,
                                                                                          self.preliminary)
        self.fit = {"fit_period": self.fit_period, "n_harmonics": int(products.get("n_harmonics", 2))}
        self.mode = check_mode(str(products.get("unforced") or "off"))
        self.onset = float(products.get("unforced_onset") or DEFAULT_ONSET)
        self.z = float(products.get("unforced_z") or DEFAULT_Z)
        self.grace = _grace_targets(cube_dir, self.times) if self.mode != "off" and train_period else {}
        self.trend_fit = tuple(decimal_year(pd.DatetimeIndex(list(train_period)))) if train_period else None
        self._unforced: dict[tuple[str, int, int], np.ndarray] = {}  # per band: its (rows, lon) rate, mm/yr
        if self.trend_fit is not None:  # the months of the residual-trend fit (only those are read for it)
            idx = np.flatnonzero((self.t_years >= self.trend_fit[0] - 1e-9) & (self.t_years <= self.trend_fit[1] + 1e-9))
            self._fit_months = (int(idx[0]), int(idx[-1]) + 1) if idx.size else (0, 0)

    @property
    def centres(self) -> list[str]:
        return [str(c) for c in self.ds["target"].values]

    def read(self, centre: str, r0: int, r1: int, name: str = "twsa") -> np.ndarray:
        """(time, rows, lon) float32 mm of the store's variable ``name`` for ``centre``."""
        return np.asarray(self.ds[name].sel(target=centre)[:, r0:r1].values, dtype=np.float32)

    def anomaly(self, centre: str, r0: int, r1: int) -> np.ndarray:
        """(time, rows, lon) mm: the reconstruction plus the unforced residual trend, re-referenced to the
        baseline (the exact anomaly reference of GRACE products)."""
        twsa = self.read(centre, r0, r1)
        target = self.grace.get(centre)
        if target is not None:  # storage change the forcing cannot explain (gtws_dl.post.unforced)
            key = (centre, r0, r1)
            if key not in self._unforced:  # fitted once per band, whichever product asks first
                i0, i1 = self._fit_months
                self._unforced[key] = residual_trend(np.asarray(target[i0:i1, r0:r1], np.float32), twsa[i0:i1],
                                                     self.t_years[i0:i1], self.trend_fit, z=self.z)
            twsa = twsa + unforced_field(self._unforced[key], self.t_years, self.trend_fit[0], self.mode,
                                         self.onset)
        if self.in_base.any():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # ocean cells are all-NaN
                twsa = twsa - np.nanmean(twsa[self.in_base], axis=0, keepdims=True)
        return twsa

    def residual(self, centre: str, r0: int, r1: int) -> np.ndarray:
        """(time, rows, lon) float32 mm: :meth:`anomaly` less its trend and mean seasonal cycle (fixed fit)."""
        resid = detrend_deseasonalize(self.anomaly(centre, r0, r1), self.t_years, **self.fit)
        resid[:, ~self.land[r0:r1]] = np.nan
        return resid.astype(np.float32)


def _grace_targets(cube_dir: str | Path, times: pd.DatetimeIndex) -> dict:
    """The cube's GRACE targets {centre: lazy (time, lat, lon) mm on ``times``} (empty if the cube has none)."""
    try:
        targ = xr.open_zarr(cube_member(cube_dir, "targets.zarr"), consolidated=False)
    except (OSError, KeyError, ValueError):
        return {}
    if "twsa" not in targ or not pd.DatetimeIndex(targ["time"].values).equals(times):
        LOGGER.warning("%s: no GRACE targets on the reconstruction's months; products.unforced not applied",
                       cube_dir)
        return {}
    return {str(c): targ["twsa"].sel(target=c).data for c in targ["target"].values}
