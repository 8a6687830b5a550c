"""El Niño–Southern Oscillation diagnostics: a Niño-3.4-like index and TWSA composites.

Index (after the ONI of NOAA CPC): area-weighted (cos latitude) mean skin temperature over the box
5°S–5°N, 170°W–120°W, minus its monthly climatology, smoothed by a centred running mean of
``running`` months (3). El Niño months: index > +threshold (0.5 K); La Niña months: index < −threshold.
(The ONI additionally requires 5 consecutive overlapping seasons; we classify month by month.)

Composite: mean of a (detrended, deseasonalized) field over El Niño months minus its mean over La Niña
months (mm). Regression: least-squares slope of the field on the index (mm K⁻¹); a field equal to
``k × index`` has regression ``k`` and composite ``k × (mean index in El Niño − mean index in La Niña)``.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from gtws_dl.evaluate.skill import deseasonalize
from gtws_dl.seasonal import month_starts

LOGGER = logging.getLogger(__name__)
NINO34_BOX = (-170.0, -120.0, -5.0, 5.0)  # lon0, lon1, lat0, lat1 (degrees, lon −180..180)


def box_mean(field: xr.DataArray, box: tuple[float, float, float, float] = NINO34_BOX) -> pd.Series:
    """cos(latitude)-weighted mean of ``field`` (time, lat, lon) over ``box`` = (lon0, lon1, lat0, lat1)."""
    lon0, lon1, lat0, lat1 = box
    sub = field.sel(lat=slice(lat0, lat1), lon=slice(lon0, lon1))
    if sub.sizes["lat"] == 0 or sub.sizes["lon"] == 0:
        raise ValueError(f"the box {box} holds no grid point of the field (lat {float(field.lat.min())}.."
                         f"{float(field.lat.max())}, lon {float(field.lon.min())}..{float(field.lon.max())})")
    w = np.cos(np.deg2rad(sub["lat"]))
    series = sub.weighted(w).mean(("lat", "lon")).values
    idx = month_starts(sub["time"].values)
    return pd.Series(np.asarray(series, float), index=idx)


def enso_index(box_series: pd.Series, *, running: int = 3) -> pd.Series:
    """Monthly anomaly (vs the series' own monthly climatology) smoothed by a centred running mean, K."""
    anom = deseasonalize(box_series.to_numpy(float), box_series.index.month.to_numpy())
    out = pd.Series(anom, index=box_series.index, name="enso_index")
    if running > 1:
        out = out.rolling(running, center=True, min_periods=running).mean()
    return out


@dataclass
class EnsoComposite:
    """Composite and regression maps (shape of a field slab) and the month counts used."""

    composite: np.ndarray  # mean(El Niño) − mean(La Niña), units of the field
    regression: np.ndarray  # slope on the index, units of the field per K
    n_nino: int
    n_nina: int


def composite(field: np.ndarray, index: np.ndarray, *, threshold: float = 0.5) -> EnsoComposite:
    """El Niño minus La Niña composite and regression of ``field`` (time, ...) on ``index`` (time,).

    NaN-aware per cell; months where the index is NaN are ignored.
    """
    x = np.asarray(index, dtype=float)
    nino, nina = x > threshold, x < -threshold
    comp, reg = composite_maps(field, x, threshold=threshold)
    if not nino.any() or not nina.any():
        LOGGER.warning("ENSO composite: %d El Niño and %d La Niña months", nino.sum(), nina.sum())
    return EnsoComposite(comp, reg, int(nino.sum()), int(nina.sum()))


def composite_maps(field: np.ndarray, index: np.ndarray, *, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(composite, regression) maps of :func:`composite`, without its checks of the month counts (per band)."""
    f = np.asarray(field, dtype=float)
    x = np.asarray(index, dtype=float)
    if f.shape[0] != x.shape[0]:
        raise ValueError(f"field has {f.shape[0]} months and the index {x.shape[0]}")
    nino, nina = x > threshold, x < -threshold
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells (ocean) give NaN, as intended
        comp = np.nanmean(f[nino], axis=0) - np.nanmean(f[nina], axis=0)
        ok = np.isfinite(x)[(...,) + (None,) * (f.ndim - 1)] & np.isfinite(f)
        n = ok.sum(0)
        xm = np.where(ok, x.reshape((-1,) + (1,) * (f.ndim - 1)), 0.0)
        fm = np.where(ok, f, 0.0)
        mx, mf = xm.sum(0) / n, fm.sum(0) / n
        cov = (np.where(ok, (xm - mx) * (fm - mf), 0.0)).sum(0)
        var = (np.where(ok, (xm - mx) ** 2, 0.0)).sum(0)
        reg = np.where((n >= 3) & (var > 0), cov / np.where(var > 0, var, 1.0), np.nan)
    return comp, reg
