"""Storage change the forcing cannot explain (land ice, glaciers, groundwater pumping): the GRACE residual trend.

A forcing-driven reconstruction sees no ice-sheet loss or aquifer depletion, so in the GRACE era its trends fall
short of GRACE's (on the twin: Greenland −2 mm/yr against −107). The residual trend of a cell is the linear trend
of ``GRACE target − reconstruction`` over the training months (linear trend + monthly climatology by least squares,
:func:`gtws_dl.seasonal.decompose`); the products add it back, so that in the GRACE era they match GRACE's trends.
Before GRACE, the choice ``unforced`` is explicit and written into the products' attributes:

Only cells whose residual trend is far outside the interannual noise get one (``|slope| > z × standard error``,
default z = 8: measured on the demo twin, z = 2 and 4 shifted the pre-GRACE record of ordinary cells by their
noise-level GRACE-era slopes and cost 0.15–0.2 of its median cNSE; z = 8 keeps it within 0.01 and still matches
the ice sheets' and the land's GRACE-era trends).

``off``
    nothing is added (the reconstruction as the network made it; GRACE-era trends not matched).
``none``
    climate-driven only before GRACE (the GRACE-REC convention): the residual trend runs from the first training
    month on; before it the correction is held at its value there (no unforced change before GRACE).
``grace_trend``
    the residual trend continued back in time with its rate tapering linearly to zero at ``onset`` (decimal year,
    default 1990: the acceleration of ice-sheet and glacier loss of the 1990s, IMBIE 2018/2020), flat before.

After the last training month the trend continues (an unforced process is assumed to go on); the products'
attributes say so.
"""

from __future__ import annotations

import warnings

import numpy as np

from gtws_dl.seasonal import decompose

UNFORCED = ("off", "none", "grace_trend")
DEFAULT_ONSET = 1990.0
DEFAULT_Z = 8.0


def check_mode(mode: str) -> str:
    if mode not in UNFORCED:
        raise ValueError(f"products.unforced={mode!r}; expected one of {UNFORCED}")
    return mode


def residual_trend(target: np.ndarray, recon: np.ndarray, t_years: np.ndarray, fit: tuple[float, float],
                   min_months: int = 36, z: float = DEFAULT_Z) -> np.ndarray:
    """Per-cell slope (rows, lon) in mm/yr of ``target − recon`` (time, rows, lon) over ``fit`` (decimal years,
    inclusive), kept only where it is significant: ``|slope| > z × its standard error``, the error inflated for
    the residuals' lag-1 autocorrelation ρ (effective months n (1 − ρ) / (1 + ρ)). Elsewhere 0: a residual trend
    within the interannual noise is the model's error of the forced variability, not storage the forcing cannot
    explain, and extrapolating it would shift the whole pre-GRACE record. 0 with fewer than ``min_months``."""
    inside = (t_years >= fit[0] - 1e-9) & (t_years <= fit[1] + 1e-9)
    if not inside.any():
        return np.zeros(target.shape[1:])
    t_years = t_years[inside]  # only the fit's months enter it: the rest of the record is not computed
    diff = target[inside].astype(np.float64) - recon[inside]
    d = decompose(diff, t_years, fit_period=fit, trend="linear", seasonal="climatology")
    slope = d.coefficients[d.columns.index("tau")]
    r = d.residual
    ok = np.isfinite(r)
    n = ok.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # ocean cells: all NaN
        var = np.nansum(r**2, 0) / np.maximum(n - 14, 1)  # 13 coefficients + the slope's own
        rho = np.nansum(r[1:] * r[:-1], 0) / np.maximum(np.nansum(r**2, 0), 1e-30)
        rho = np.clip(np.nan_to_num(rho), 0.0, 0.95)
        tt = np.where(ok, t_years[:, None, None], np.nan)
        sxx = np.nansum((tt - np.nanmean(tt, 0)) ** 2, 0)
        se = np.sqrt(var / np.maximum(sxx, 1e-30) * (1 + rho) / (1 - rho))
    keep = (d.n_fit >= min_months) & np.isfinite(slope) & (np.abs(slope) > z * se)
    return np.where(keep, slope, 0.0)


def effective_time(t_years: np.ndarray, t_lo: float, mode: str, onset: float = DEFAULT_ONSET) -> np.ndarray:
    """Years (time,) the residual slope multiplies, 0 at ``t_lo`` (the first training month).

    ``none``: ``max(t − t_lo, 0)``; ``grace_trend``: below ``t_lo`` the rate falls linearly to 0 at ``onset``,
    i.e. ``−(L² − (max(t, onset) − onset)²) / (2 L)`` with ``L = t_lo − onset``; ``off``: zeros.
    """
    check_mode(mode)
    t = np.asarray(t_years, float)
    if mode == "off":
        return np.zeros_like(t)
    tau = t - t_lo
    if mode == "none" or onset >= t_lo:
        return np.maximum(tau, 0.0)
    L = t_lo - onset
    back = -(L**2 - (np.maximum(t, onset) - onset) ** 2) / (2 * L)
    return np.where(t >= t_lo, tau, back)


def unforced_field(slope: np.ndarray, t_years: np.ndarray, t_lo: float, mode: str,
                   onset: float = DEFAULT_ONSET) -> np.ndarray:
    """(time, rows, lon) mm to add to a reconstruction: ``slope × effective_time``."""
    tau = effective_time(t_years, t_lo, mode, onset).astype(np.float32)
    return tau[:, None, None] * slope.astype(np.float32)[None]


def describe(mode: str, onset: float, fit: tuple[str, str] | None, z: float = DEFAULT_Z) -> str:
    """The products' ``unforced`` attribute."""
    if mode == "off" or fit is None:
        return "off: no storage change beyond the forcing's is added (GRACE-era trends not matched)"
    span = (f"GRACE target minus reconstruction, linear trend per cell over {fit[0]} to {fit[1]}, where above "
            f"{z:g} standard errors")
    if mode == "none":
        return f"none: residual trend ({span}) added from {fit[0]} on, continued after; held constant before"
    return (f"grace_trend: residual trend ({span}) added from {fit[0]} on, continued after; before, its rate "
            f"tapers linearly to zero at {onset:g}, constant before that")
