"""GRACE/GRACE-FO-like observations of the twin truth: footprint smoothing, centre noise, real availability.

The mascon footprint is a Gaussian in km (half width at half maximum ``footprint_km``), applied as a
latitude pass with a constant sigma and a longitude pass whose sigma in degrees grows as 1/cos(lat), so it
is the same size on the ground everywhere. The ocean carries no mass in the truth, so smoothing leaks land
signal out to sea and damps it at the coast, as real GRACE does.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from gtws_dl.grid import Grid, GridError
from gtws_dl.twin.geo import R_KM

FIRST_MONTH = "2002-04"
MISSING = ["2002-06", "2002-07", "2003-06", "2011-01", "2011-06", "2012-05", "2012-10", "2013-03", "2013-08",
           "2013-09", "2014-02", "2014-07", "2014-12", "2015-06", "2015-10", "2015-11", "2016-04", "2016-09",
           "2016-10", "2017-02", "2018-08", "2018-09"] + [str(m) for m in np.arange(
               np.datetime64("2017-07"), np.datetime64("2018-06"))]
# Solutions whose span is not the calendar month (real quirks): first GRACE-FO month starts 22 May;
# the Dec 2015 solution runs into January.
SPECIAL_SPANS = {"2018-06": ("2018-05-22", "2018-07-01"), "2015-12": ("2015-12-14", "2016-01-14")}
TIME_UNITS = "days since 2002-01-01T00:00:00Z"
_EPOCH = np.datetime64("2002-01-01", "D")


def available_months(start: str, end: str) -> np.ndarray:
    """Real GRACE/GRACE-FO months within [start, end], ``datetime64[M]`` ascending."""
    t0 = max(np.datetime64(start, "M"), np.datetime64(FIRST_MONTH, "M"))
    m = np.arange(t0, np.datetime64(end, "M") + 1)
    miss = np.array(MISSING, dtype="datetime64[M]")
    return m[~np.isin(m, miss)]


def spans(months: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first day, day after last) of each solution, ``datetime64[D]``."""
    a, b = [], []
    for m in months:
        s = SPECIAL_SPANS.get(str(m))
        if s:
            a.append(np.datetime64(s[0], "D"))
            b.append(np.datetime64(s[1], "D"))
        else:
            a.append(m.astype("datetime64[D]"))
            b.append((m + 1).astype("datetime64[D]"))
    return np.array(a), np.array(b)


def span_weights(months: np.ndarray, truth_months: np.ndarray) -> np.ndarray:
    """(n_solutions, n_truth_months) day-overlap weights (rows sum to 1) to average monthly truth."""
    a, b = spans(months)
    t0 = truth_months.astype("datetime64[D]")
    t1 = (truth_months.astype("datetime64[M]") + 1).astype("datetime64[D]")
    ov = np.maximum(0, (np.minimum(b[:, None], t1[None]) - np.maximum(a[:, None], t0[None])).astype(float))
    return ov / ov.sum(axis=1, keepdims=True)


def time_coords(months: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mid-span ``time`` and ``time_bounds`` (n, 2) in days since 2002-01-01."""
    a, b = spans(months)
    da = (a - _EPOCH).astype(float)
    db = (b - _EPOCH).astype(float)
    return (da + db) / 2, np.stack([da, db], axis=1)


def smooth(field: np.ndarray, grid: Grid, hwhm_km: float) -> np.ndarray:
    """Gaussian footprint smoothing of (..., nlat, nlon) mm; NaN (ocean) counts as zero mass."""
    sigma_km = hwhm_km / np.sqrt(2 * np.log(2))
    deg_km = np.pi * R_KM / 180.0
    s_lat = sigma_km / (deg_km * grid.res)
    x = np.nan_to_num(np.asarray(field, dtype=np.float64))
    x = gaussian_filter1d(x, s_lat, axis=-2, mode="reflect", truncate=3.0)
    wrap = grid.nlon * grid.res >= 360 - 1e-6
    coslat = np.maximum(np.cos(np.deg2rad(grid.lat)), 0.02)
    for i, c in enumerate(coslat):
        s = min(s_lat / c, 2 * grid.nlon)
        x[..., i, :] = gaussian_filter1d(x[..., i, :], s, axis=-1, mode="wrap" if wrap else "reflect", truncate=3.0)
    return x


def centre_grid(grid: Grid, native_res: float) -> Grid:
    """The centre's grid: its native resolution when that is an integer multiple coarser than the twin's."""
    ratio = native_res / grid.res
    if ratio > 1 + 1e-9 and abs(ratio - round(ratio)) < 1e-9:
        try:
            return Grid(native_res, grid.bbox)
        except GridError:
            pass
    return grid


def block_mean(x: np.ndarray, grid: Grid, target: Grid) -> np.ndarray:
    """Area-weighted block average of (..., nlat, nlon) from ``grid`` to the coarser aligned ``target``."""
    if target.res == grid.res:
        return x
    k = int(round(target.res / grid.res))
    w = grid.cell_area()
    den = w.reshape(target.nlat, k, target.nlon, k).sum(axis=(1, 3))
    if x.ndim == 3 and x.shape[0] > 12:  # a year of fields at a time: no full-size weighted copy
        return np.concatenate([block_mean(x[i:i + 12], grid, target) for i in range(0, x.shape[0], 12)])
    sh = x.shape[:-2] + (target.nlat, k, target.nlon, k)
    num = (x * w).reshape(sh).sum(axis=(-3, -1))
    return num / den
