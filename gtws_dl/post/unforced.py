"""Storage change the forcing cannot explain (land ice, glaciers, groundwater pumping): the GRACE residual trend.

A forcing-driven reconstruction sees no ice-sheet loss or aquifer depletion, so in the GRACE era its trends fall
short of GRACE's (on the twin: Greenland −2 mm/yr against −107). The residual trend of a cell is the linear trend
of ``GRACE target − reconstruction`` over the training months (linear trend + monthly climatology by least squares,
:func:`gtws_dl.seasonal.decompose`); the products add it back, so that in the GRACE era they match GRACE's trends.
Before GRACE, the choice ``unforced`` is explicit and written into the products' attributes:

Only cells whose residual trend stands out of the interannual noise get one (``|slope| > z × standard error``,
the error inflated for the residuals' lag-1 autocorrelation; default z = 2). Measured 2026-12-04, csr, land
medians: on the demo twin z = 8 / 4 / 2 leave the 1940–2001 skill as it is (cNSE vs truth 0.170 / 0.170 / 0.167)
and bring the per-cell GRACE-era trend error 0.403 / 0.368 / 0.293 and the GRACE-era cNSE 0.470 / 0.488 / 0.501;
on a 0.25° Europe box (a forced wetting the network half misses) the area-mean trend 1.10 / 1.43 / 1.47 mm/yr
against GRACE's 1.50, per-cell error 0.367 / 0.228 / 0.168, 1940–2001 cNSE 0.484 / 0.489 / 0.493. (With the
models of 2026-11, before the forcing-memory base, z = 2 and 4 had cost 0.15–0.2 of the pre-GRACE cNSE.)

``off``
    nothing is added (the reconstruction as the network made it; GRACE-era trends not matched).
``none``
    climate-driven only before GRACE (the GRACE-REC convention): the residual trend runs from the first training
    month on; before it the correction is held at its value there (no unforced change before GRACE).
``grace_trend``
    the residual trend continued back in time with its rate tapering linearly to zero at ``onset`` (decimal year,
    default 1990: the acceleration of ice-sheet and glacier loss of the 1990s, IMBIE 2018/2020), flat before.
``external``
    as ``none`` in the GRACE era; before the first GRACE month, the change of external estimates
    (:class:`External`): regional mass series (CSV, Gt; e.g. IMBIE's ice sheets), each spread over its
    continent's cells in proportion to their residual trends (the pattern GRACE saw), and/or a gridded storage
    field (NetCDF, mm; e.g. groundwater depletion, glaciers), conservatively regridded; cells neither covers are
    held as with ``none``.

After the last training month the trend continues (an unforced process is assumed to go on); the products'
attributes say so.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from gtws_dl.grid import Grid
from gtws_dl.io.errors import InputFileError
from gtws_dl.io.regrid import regrid_conservative
from gtws_dl.io.unforced_inputs import open_storage_field, read_field_rows, read_mass_series
from gtws_dl.post.regions import CONTINENTS, region_masks
from gtws_dl.seasonal import decimal_year, decompose

UNFORCED = ("off", "none", "grace_trend", "external")
GT_KG = 1e12  # kg per Gt (1 mm of water over 1 m² = 1 kg)
DEFAULT_ONSET = 1990.0
DEFAULT_Z = 2.0


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
    ``external``: as ``none`` (its change before ``t_lo`` is :class:`External`'s).

    Measured, not adopted (2026-12-04, demo csr): running the trend line back to the first GRACE month instead
    (through the validation months before ``t_lo``) made the GRACE-era trends steeper than GRACE's (land −1.28
    vs −1.17 mm/yr, Greenland −113 vs −107) and lowered the pre-2002 cNSE vs the forced stores 0.230 → 0.207:
    the line fitted on later, faster-losing years overshoots the early ones.
    """
    check_mode(mode)
    t = np.asarray(t_years, float)
    if mode == "off":
        return np.zeros_like(t)
    tau = t - t_lo
    if mode in ("none", "external") or onset >= t_lo:
        return np.maximum(tau, 0.0)
    L = t_lo - onset
    back = -(L**2 - (np.maximum(t, onset) - onset) ** 2) / (2 * L)
    return np.where(t >= t_lo, tau, back)


def unforced_field(slope: np.ndarray, t_years: np.ndarray, t_lo: float, mode: str,
                   onset: float = DEFAULT_ONSET) -> np.ndarray:
    """(time, rows, lon) mm to add to a reconstruction: ``slope × effective_time``."""
    tau = effective_time(t_years, t_lo, mode, onset).astype(np.float32)
    return tau[:, None, None] * slope.astype(np.float32)[None]


def describe(mode: str, onset: float, fit: tuple[str, str] | None, z: float = DEFAULT_Z,
             external: External | None = None, external_from: str = "") -> str:
    """The products' ``unforced`` attribute (``external_from``: the month the external estimates end at)."""
    if mode == "off" or fit is None:
        return "off: no storage change beyond the forcing's is added (GRACE-era trends not matched)"
    span = (f"GRACE target minus reconstruction, linear trend per cell over {fit[0]} to {fit[1]}, where above "
            f"{z:g} standard errors")
    if mode == "none":
        return f"none: residual trend ({span}) added from {fit[0]} on, continued after; held constant before"
    if mode == "external":
        return (f"external: residual trend ({span}) added from {fit[0]} on, continued after, held before; before "
                f"{external_from or fit[0]} (the first GRACE month) the change of the external estimates: "
                f"{external.describe() if external else 'none given'}")
    return (f"grace_trend: residual trend ({span}) added from {fit[0]} on, continued after; before, its rate "
            f"tapers linearly to zero at {onset:g}, constant before that")


def _change_before(t_src: np.ndarray, values: np.ndarray, t_years: np.ndarray, t_lo: float) -> np.ndarray:
    """(time, ...) float64: ``values`` (steps at ``t_src``, ...) interpolated linearly in time (held beyond its
    ends) at ``t_years`` minus at ``t_lo``, for the months before ``t_lo``; 0 from ``t_lo`` on."""
    n = len(t_src)
    t = np.minimum(np.asarray(t_years, float), t_lo)
    pos = np.interp(np.append(t, t_lo), t_src, np.arange(n, dtype=float))
    i0 = np.clip(np.floor(pos).astype(int), 0, n - 1)
    i1 = np.minimum(i0 + 1, n - 1)
    a = (pos - i0).reshape((-1,) + (1,) * (values.ndim - 1))
    v = (1 - a) * values[i0] + a * values[i1]
    return v[:-1] - v[-1:]


@dataclass(frozen=True)
class External:
    """External estimates of the storage the forcing cannot explain, used before GRACE (``unforced=external``).

    ``series``: {continent: cumulative Gt} on decimal years (:func:`~gtws_dl.io.unforced_inputs.read_mass_series`),
    ``field``: lazy (time, lat, lon) mm with ``t_years`` (:func:`~gtws_dl.io.unforced_inputs.open_storage_field`).
    """

    series: pd.DataFrame | None = None
    field: xr.DataArray | None = None
    series_path: str | None = None
    field_path: str | None = None

    @classmethod
    def from_config(cls, products: Mapping) -> External:
        """From ``products.unforced_series`` / ``unforced_field`` (``unforced_field_variable``); one is needed."""
        sp, fp = products.get("unforced_series"), products.get("unforced_field")
        var = products.get("unforced_field_variable")
        if not sp and not fp:
            raise ValueError("products.unforced=external needs products.unforced_series (CSV of regional mass "
                             "series, Gt) and/or products.unforced_field (NetCDF storage field, mm); neither is set")
        series = read_mass_series(sp) if sp else None
        if series is not None:
            unknown = sorted(set(series.columns) - set(CONTINENTS))
            if unknown:
                raise InputFileError(f"{sp}: columns {unknown} are not regions of the products; expected "
                                     f"continents {list(CONTINENTS)} (gtws_dl/data/continents.geojson)",
                                     paths=[str(sp)], expected=f"columns among {list(CONTINENTS)}",
                                     found=str(unknown))
        field = open_storage_field(fp, var) if fp else None
        return cls(series, field, str(sp) if sp else None, str(fp) if fp else None)

    def attrs(self) -> dict[str, str]:
        """The product attributes naming these estimates (:meth:`from_attrs` reads them back)."""
        out = {}
        if self.series_path:
            out["unforced_series_file"] = self.series_path
        if self.field_path:
            out["unforced_field_file"] = self.field_path
            out["unforced_field_variable"] = str(self.field.name)
        return out

    @classmethod
    def from_attrs(cls, attrs: Mapping) -> External:
        """The estimates a product was published with (its :meth:`attrs`)."""
        return cls.from_config({"unforced_series": attrs.get("unforced_series_file"),
                                "unforced_field": attrs.get("unforced_field_file"),
                                "unforced_field_variable": attrs.get("unforced_field_variable")})

    def check_reaches(self, month: str) -> None:
        """Refuse estimates that end more than a year before ``month`` (``YYYY-MM``, where they hand over to the
        residual trend): the change between their end and it would be taken as none, silently."""
        t0 = float(decimal_year([month])[0])
        for path, what, last in ((self.series_path, "series", None if self.series is None else self.series.index[-1]),
                                 (self.field_path, "field", None if self.field is None else
                                  float(self.field["t_years"].values[-1]))):
            if last is not None and last < t0 - 1.0:
                raise InputFileError(f"{path}: the external {what} ends at {last:.2f}, more than a year before "
                                     f"{month} (the first GRACE month, where it hands over to GRACE's trend): the "
                                     "change in between is unknown; extend it to that month",
                                     paths=[str(path)], expected=f"values up to {month}", found=f"up to {last:.2f}")
        if self.series is not None and self.series.index[0] > t0 - 1.0:
            raise InputFileError(f"{self.series_path}: the series starts at {self.series.index[0]:.2f}, after "
                                 f"{month}: it holds no change before GRACE", paths=[str(self.series_path)])

    def describe(self) -> str:
        parts = []
        if self.series is not None:
            parts.append(f"mass series of {', '.join(self.series.columns)} from {self.series_path} (Gt), spread over "
                         "each continent's cells in proportion to their residual trends")
        if self.field is not None:
            parts.append(f"storage field {self.field.name!r} of {self.field_path} (mm, regridded conservatively)")
        return "; ".join(parts) + "; elsewhere held constant"

    def field_band(self, band: Grid, t_years: np.ndarray, t_lo: float) -> np.ndarray:
        """(time, rows, lon) float64 mm: the gridded field's change from ``t_lo`` on the band ``band``, months
        before ``t_lo`` (0 after, and where the field has no estimate)."""
        f = self.field
        src_res = float(np.abs(np.diff(f["lat"].values[:2])).max()) if f.sizes["lat"] > 1 else 180.0
        lat0, lat1 = band.bounds[2], band.bounds[3]
        rows = read_field_rows(f, (lat0, lat1), 2 * src_res)
        if rows is None:  # the field does not reach these latitudes: no estimate here
            return np.zeros((len(t_years), band.nlat, band.nlon))
        on_band = regrid_conservative(rows.drop_vars("t_years"), band).values.astype(np.float64)
        return np.nan_to_num(_change_before(f["t_years"].values, on_band, t_years, t_lo))

    def series_band(self, rate: np.ndarray, continents: Mapping[str, np.ndarray], totals: Mapping[str, tuple],
                    t_years: np.ndarray, t_lo: float) -> np.ndarray:
        """(time, rows, lon) float64 mm: each series' mass change from ``t_lo`` (months before it) spread over its
        continent: a cell takes the share of the continent's residual mass trend it holds, ``max(0, s rate) area /
        Σ max(0, s rate) area`` (``s`` the sign of the continent's trend), or its share of the area where no
        cell's trend was kept. ``continents``: the band's (rows, lon) masks; ``totals``: {continent: (s,
        Σ max(0, s rate) area [mm yr⁻¹ m²], area [m²])} over the whole grid (:func:`continent_totals`)."""
        out = np.zeros((len(t_years),) + rate.shape)
        for name in self.series.columns:
            share = _share_per_m2(rate, continents[name], totals[name])
            out += self.series_change(name, t_years, t_lo)[:, None, None] * GT_KG * share[None]
        return out

    def series_change(self, name: str, t_years: np.ndarray, t_lo: float) -> np.ndarray:
        """(time,) Gt: continent ``name``'s mass change from ``t_lo`` (months before it; 0 after)."""
        s = self.series
        return _change_before(s.index.to_numpy(float), s[name].to_numpy(float), t_years, t_lo)

    def regional(self, rate: np.ndarray, grid: Grid, land: np.ndarray, area: np.ndarray,
                 masks: Mapping[str, np.ndarray], t_years: np.ndarray, t_lo: float,
                 band_bytes: int = 2**28) -> dict[str, np.ndarray]:
        """{region: (time,) Gt}: what :meth:`series_band` + :meth:`field_band` add over each of ``masks`` (land
        masks of the whole grid), the field summed in latitude bands of at most ``band_bytes``."""
        rate = np.nan_to_num(rate)
        out = {q: np.zeros(len(t_years)) for q in masks}
        if self.series is not None:
            conts = region_masks(grid, land)
            names = list(self.series.columns)
            totals = continent_totals([(0, land.shape[0], rate)], conts, area, names)
            for r in names:
                share = _share_per_m2(rate, conts[r], totals[r]) * area  # fraction of the change per cell
                change = self.series_change(r, t_years, t_lo)
                for q, m in masks.items():
                    out[q] += float(share[m].sum()) * change
        if self.field is not None:
            H, W = land.shape
            step = max(1, int(band_bytes // (8 * len(t_years) * W)))
            for r0 in range(0, H, step):
                r1 = min(H, r0 + step)
                mm = self.field_band(grid.rows(r0, r1), t_years, t_lo)
                for q, m in masks.items():
                    w = np.where(m[r0:r1], area[r0:r1], 0.0)
                    out[q] += np.tensordot(mm, w, axes=([1, 2], [0, 1])) / GT_KG
        return out


def _share_per_m2(rate: np.ndarray, mask: np.ndarray, total: tuple[float, float, float]) -> np.ndarray:
    """(rows, lon) m⁻²: a cell's share of its continent's mass change per m² of the cell (kg m⁻² = mm per kg):
    ``max(0, s rate) / Σ max(0, s rate) area``, or ``1 / the continent's area`` where no cell's trend was kept."""
    sign, weight, area = total
    if not mask.any() or area <= 0:
        return np.zeros(mask.shape)
    if weight > 0:
        return np.where(mask, np.maximum(sign * np.nan_to_num(rate), 0.0) / weight, 0.0)
    return mask / area


def choices(rate: np.ndarray, area: np.ndarray, masks: Mapping[str, np.ndarray], t_years: np.ndarray, t_lo: float,
            onset: float = DEFAULT_ONSET) -> dict[str, dict[str, np.ndarray]]:
    """{mode: {region: (time,) Gt}}: the storage each residual-trend choice (off, none, grace_trend) adds over
    ``masks``, from the products' rate map ``rate`` (lat, lon) mm/yr (``External.regional`` adds external's)."""
    rate = np.nan_to_num(rate)
    per_region = {q: float((rate * area)[m].sum()) / GT_KG for q, m in masks.items()}  # Gt/yr
    return {mode: {q: g * effective_time(t_years, t_lo, mode, onset) for q, g in per_region.items()}
            for mode in ("off", "none", "grace_trend")}


def continent_totals(rate_rows, continents: Mapping[str, np.ndarray], area: np.ndarray,
                     names) -> dict[str, tuple[float, float, float]]:
    """{continent: (sign of its residual mass trend, Σ max(0, sign rate) area, its land area)}, summed over the
    bands ``rate_rows`` yields as ``(r0, r1, rate (rows, lon) mm/yr)``; ``continents``: whole-grid masks."""
    tot = {n: [0.0, 0.0, 0.0] for n in names}  # Σ rate area, Σ max(0, rate) area, Σ max(0, −rate) area
    area_of = {n: float(area[continents[n]].sum()) for n in names}
    for r0, r1, rate in rate_rows:
        a = area[r0:r1]
        for n in names:
            m = continents[n][r0:r1]
            r = np.nan_to_num(rate[m])
            tot[n][0] += float((r * a[m]).sum())
            tot[n][1] += float((np.maximum(r, 0) * a[m]).sum())
            tot[n][2] += float((np.maximum(-r, 0) * a[m]).sum())
    out = {}
    for n, (net, pos, neg) in tot.items():
        sign = 1.0 if net > 0 else -1.0
        out[n] = (sign, pos if sign > 0 else neg, area_of[n])
    return out
