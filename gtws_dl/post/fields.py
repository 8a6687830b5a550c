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

import netCDF4
import numpy as np
import pandas as pd
import xarray as xr

from gtws_dl.conventions import BASELINE
from gtws_dl.cube.periods import first_grace_month
from gtws_dl.cube.store import _read_manifest_text, cube_member
from gtws_dl.grid import Grid
from gtws_dl.post.regions import region_masks
from gtws_dl.post.unforced import (
    DEFAULT_ONSET,
    DEFAULT_Z,
    External,
    check_mode,
    continent_totals,
    describe,
    residual_trend,
    unforced_field,
)
from gtws_dl.recon_store import open_finished
from gtws_dl.seasonal import decimal_year, decompose, design_matrix, fit_reference_time, residual_of_fit

LOGGER = logging.getLogger(__name__)
UNFORCED_VAR = "unforced_trend"  # (lat, lon) mm/yr in the twsa product: the residual trend added
COEFFICIENTS_VAR = "decomposition_coefficients"  # (coefficient, lat, lon) in the detrended product: its fit


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
    frozen : {centre: (its twsa product, its detrended product)}: reuse the fits these products were published
        with (:data:`UNFORCED_VAR`, :data:`COEFFICIENTS_VAR`) and compute only the months asked for (``since``),
        without reading the record: the monthly update
    """

    def __init__(self, recon_path: str | Path, cube_dir: str | Path, *, train_period: Sequence[str] | None,
                 products: Mapping | None = None, baseline: tuple[str, str] = BASELINE,
                 frozen: Mapping[str, tuple[Path, Path]] | None = None) -> None:
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
        self.external = External.from_config(products) if self.mode == "external" and self.grace else None
        self._continents: dict[str, np.ndarray] | None = None  # whole-grid masks of the external series' regions
        self._totals: dict[str, dict] = {}  # per centre: continent_totals of its residual trends
        self.train_period = tuple(train_period) if train_period else None
        self.trend_fit = tuple(decimal_year(pd.DatetimeIndex(list(train_period)))) if train_period else None
        self._unforced: dict[tuple[str, int, int], np.ndarray] = {}  # per band: its (rows, lon) rate, mm/yr
        self.frozen = dict(frozen or {})  # {centre: (twsa product, dd product)} whose fits are reused
        self.t_ref = fit_reference_time(self.t_years, self.fit_period)
        if self.external is not None:
            for c in self.grace:
                self.external.check_reaches(self.external_from_month(c))
        if self.trend_fit is not None:  # the months of the residual-trend fit (only those are read for it)
            idx = np.flatnonzero((self.t_years >= self.trend_fit[0] - 1e-9) & (self.t_years <= self.trend_fit[1] + 1e-9))
            self._fit_months = (int(idx[0]), int(idx[-1]) + 1) if idx.size else (0, 0)

    @property
    def centres(self) -> list[str]:
        return [str(c) for c in self.ds["target"].values]

    @property
    def grid(self) -> Grid:
        """The products' grid (the cube's)."""
        g = self.cube_manifest.get("grid")
        if g:
            bbox = g.get("bbox")
            return Grid.from_config(g["res"], None if bbox is None or np.allclose(bbox, (-180, 180, -90, 90))
                                    else bbox)
        lat, lon = self.ds["lat"].values, self.ds["lon"].values
        res = float(np.round(lat[1] - lat[0], 6))
        return Grid(res, (lon[0] - res / 2, lon[-1] + res / 2, lat[0] - res / 2, lat[-1] + res / 2))

    def unforced_attr(self, centre: str) -> str:
        """The ``unforced`` attribute of ``centre``'s products."""
        return describe(self.mode if centre in self.grace else "off", self.onset, self.train_period, self.z,
                        self.external, self.external_from_month(centre))

    def external_from_month(self, centre: str) -> str:
        """``YYYY-MM`` the external estimates take over before: ``centre``'s first GRACE month (the cube's
        ``periods``; the GRACE months before the first training month keep the residual trend's value, as with
        ``none``), the first training month when the cube does not say."""
        grace = first_grace_month(self.cube_manifest, centre)
        first = self.train_period[0] if self.train_period else None
        return min(m for m in (grace, first) if m) if (grace or first) else ""

    def external_from(self, centre: str) -> float:
        """:meth:`external_from_month` as a decimal year."""
        return float(decimal_year(pd.DatetimeIndex([self.external_from_month(centre)]))[0])

    def read(self, centre: str, r0: int, r1: int, name: str = "twsa", since: int = 0,
             until: int | None = None) -> np.ndarray:
        """(time, rows, lon) float32 mm of the store's variable ``name`` for ``centre``, months ``since .. until``."""
        return np.asarray(self.ds[name].sel(target=centre)[since:until, r0:r1].values, dtype=np.float32)

    def rate(self, centre: str, r0: int, r1: int, twsa: np.ndarray | None = None) -> np.ndarray | None:
        """(rows, lon) mm/yr: the unforced residual trend of the band (None: none is applied to ``centre``).

        Fitted once per band on the training months (``twsa``: the band's whole reconstruction, if at hand), or
        read from the published product when the fields are ``frozen`` (the monthly update)."""
        target = self.grace.get(centre)
        if target is None:
            return None
        key = (centre, r0, r1)
        if key not in self._unforced:  # fitted once per band, whichever product asks first
            if centre in self.frozen:
                self._unforced[key] = self._frozen(centre, "rate", r0, r1)
            else:
                i0, i1 = self._fit_months
                recon = twsa[i0:i1] if twsa is not None else self.read(centre, r0, r1, since=i0, until=i1)
                self._unforced[key] = residual_trend(np.asarray(target[i0:i1, r0:r1], np.float32), recon,
                                                     self.t_years[i0:i1], self.trend_fit, z=self.z)
        return self._unforced[key]

    def anomaly(self, centre: str, r0: int, r1: int, since: int = 0) -> np.ndarray:
        """(time, rows, lon) mm of months ``since ..``: the reconstruction plus the unforced residual trend,
        re-referenced to the baseline (the exact anomaly reference of GRACE products)."""
        twsa = self.read(centre, r0, r1, since=since)
        rate = self.rate(centre, r0, r1, twsa if since == 0 else None)
        if rate is not None:  # storage change the forcing cannot explain (gtws_dl.post.unforced)
            twsa = twsa + self.unforced(centre, rate, r0, r1, since, len(self.times))
        if self.in_base.any():
            base = twsa[self.in_base[since:]] if since == 0 else self._baseline_months(centre, r0, r1, rate)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # ocean cells are all-NaN
                twsa = twsa - np.nanmean(base, axis=0, keepdims=True)
        return twsa

    def _baseline_months(self, centre: str, r0: int, r1: int, rate: np.ndarray | None) -> np.ndarray:
        """(baseline months, rows, lon) mm: the baseline's months of the reconstruction + unforced field, as the
        whole-record :meth:`anomaly` has them (read alone: the update does not read the record)."""
        idx = np.flatnonzero(self.in_base)
        i0, i1 = int(idx[0]), int(idx[-1]) + 1
        twsa = self.read(centre, r0, r1, since=i0, until=i1)
        if rate is not None:
            twsa = twsa + self.unforced(centre, rate, r0, r1, i0, i1)
        return twsa[self.in_base[i0:i1]]

    def unforced(self, centre: str, rate: np.ndarray, r0: int, r1: int, i0: int, i1: int) -> np.ndarray:
        """(months i0 .. i1, rows, lon) float32 mm added to the band's reconstruction: the residual trend
        (:func:`~gtws_dl.post.unforced.unforced_field`) and, with ``external``, the external estimates' change
        before the first GRACE month (:meth:`external_from`)."""
        t, t_lo = self.t_years[i0:i1], self.trend_fit[0]
        add = unforced_field(rate, t, t_lo, self.mode, self.onset)
        ext = self.external
        t0 = self.external_from(centre)
        if ext is None or not (t < t0).any():
            return add
        before = np.zeros(add.shape)
        if ext.field is not None:
            before += ext.field_band(self.grid.rows(r0, r1), t, t0)
        if ext.series is not None:
            continents = {n: m[r0:r1] for n, m in self.continents.items()}
            before += ext.series_band(rate, continents, self.totals(centre), t, t0)
        before[:, ~self.land[r0:r1]] = 0.0
        return add + before.astype(np.float32)

    @property
    def continents(self) -> dict[str, np.ndarray]:
        """Whole-grid (lat, lon) land masks of the external series' continents."""
        if self._continents is None:
            masks = region_masks(self.grid, self.land)
            self._continents = {n: masks[n] for n in self.external.series.columns}
            for n, m in self._continents.items():
                if not m.any():
                    LOGGER.warning("%s: the series of %s is not used: the products' grid holds no land cell of it",
                                   self.external.series_path, n)
        return self._continents

    def totals(self, centre: str) -> dict:
        """Each external series continent's residual-trend weights over the whole grid
        (:func:`~gtws_dl.post.unforced.continent_totals`), from its rates band by band."""
        if centre not in self._totals:
            H = self.land.shape[0]
            step = max(1, H // 8)
            bands = ((r0, min(H, r0 + step), self.rate(centre, r0, min(H, r0 + step))) for r0 in range(0, H, step))
            self._totals[centre] = continent_totals(bands, self.continents, self.area, list(self.continents))
        return self._totals[centre]

    def residual(self, centre: str, r0: int, r1: int, since: int = 0) -> np.ndarray:
        """(time, rows, lon) float32 mm of months ``since ..``: :meth:`anomaly` less its trend and mean seasonal
        cycle (the fixed fit: refitted over ``fit_period`` from the whole record, or the ``frozen`` product's)."""
        if since == 0 and centre not in self.frozen:
            return self.residual_and_coefficients(centre, r0, r1)[0]
        coef = self._frozen(centre, "coefficients", r0, r1)
        resid = residual_of_fit(self.anomaly(centre, r0, r1, since), self.t_years[since:], coef, t_ref=self.t_ref,
                                n_harmonics=self.fit["n_harmonics"])
        resid[:, ~self.land[r0:r1]] = np.nan
        return resid.astype(np.float32)

    def residual_and_coefficients(self, centre: str, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
        """The whole record's :meth:`residual` and the fit's coefficients (ncoef, rows, lon) float64 (columns
        :attr:`coefficient_names`; ``tau`` in mm/yr, the others mm), NaN over the ocean."""
        d = decompose(self.anomaly(centre, r0, r1), self.t_years, **self.fit)
        resid = d.residual
        resid[:, ~self.land[r0:r1]] = np.nan
        coef = d.coefficients
        coef[:, ~self.land[r0:r1]] = np.nan
        return resid.astype(np.float32), coef

    @property
    def coefficient_names(self) -> tuple[str, ...]:
        return design_matrix(self.t_years[:1], t_ref=0.0, n_harmonics=self.fit["n_harmonics"])[1]

    def _frozen(self, centre: str, what: str, r0: int, r1: int) -> np.ndarray:
        """The published fit of a band: the unforced rate (rows, lon), or the decomposition coefficients."""
        twsa_nc, dd_nc = self.frozen[centre]
        path, name = (twsa_nc, UNFORCED_VAR) if what == "rate" else (dd_nc, COEFFICIENTS_VAR)
        with netCDF4.Dataset(path) as nc:
            if name not in nc.variables:
                raise KeyError(f"{path} has no variable {name!r} (published before products kept their fits)")
            v = nc[name]
            v.set_auto_mask(False)
            a = np.asarray(v[r0:r1] if what == "rate" else v[:, r0:r1])
        return np.nan_to_num(a, nan=0.0) if what == "rate" else a


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
