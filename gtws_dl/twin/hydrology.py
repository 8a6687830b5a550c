"""Monthly water balance of the twin Earth, per land cell, plus the storage the forcing cannot explain.

Stores (mm water equivalent): ``snow`` (SWE), ``soil`` (bucket, capacity ``smax``), ``gw`` (groundwater,
linear reservoir, time constant ``tau_gw`` months), ``sw`` (rivers/lakes/wetlands, linear reservoir
``tau_sw`` months). One explicit step per month with fluxes in mm per month:

    snowfall = fs(T) P,  melt = min(SWE, DDF max(T, 0) days)          fs = clip((1.5 - T) / 5, 0, 1)
    infiltration = f_frozen(T) (rain + melt), the rest runs off the frozen ground to ``sw``
    ET_soil = min(soil, PET (1 - f_w) beta(soil / smax) (1 - snow cover)),  ET_sw = min(sw, PET f_w)
    saturation excess above smax -> recharge (fraction r) and quick flow; drainage k (soil/smax)^2 soil
    baseflow = gw (1 - exp(-1 / tau_gw)),  river outflow R = sw (1 - exp(-1 / tau_sw))
    SWE above ``SWE_CAP`` flows away as ice discharge into ``sw`` (keeps ice sheets in balance)

so that  d(snow + soil + gw + sw) = P - (ET_soil + ET_sw) - R  exactly (float64).
Parameters come from land-cover fractions, aridity and temperature (:func:`cell_params`), never per-cell dice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DDF = 2.5  # degree-day factor, mm per deg C per day
SWE_CAP = 1000.0  # mm; perennial snow above this becomes glacier ice flowing out (balance)
K_DRAIN = 0.04  # per month at saturation
STORES = ("snow", "soil", "gw", "sw")

# Per-class bucket capacity (mm) and maximum LAI; classes as in FORMATS.md.
CLASSES = ("forest", "shrubland", "grassland", "cropland", "wetland", "urban", "bare", "snow_ice", "water")
SMAX_CLASS = np.array([250.0, 150.0, 150.0, 180.0, 300.0, 60.0, 50.0, 20.0, 300.0])


@dataclass
class Params:
    """Per-cell parameters, each shape (ncell,)."""

    smax: np.ndarray  # mm
    tau_gw: np.ndarray  # months
    tau_sw: np.ndarray  # months
    recharge_frac: np.ndarray  # 0..1
    f_water: np.ndarray  # open-water/wetland fraction evaporating at PET


def cell_params(frac: np.ndarray, aridity: np.ndarray, t_ann: np.ndarray) -> Params:
    """Parameters from land cover ``frac`` (9, ncell), aridity 1 - P/PET (ncell,) and mean temperature (deg C).

    - ``smax``: rooting-depth capacity, area mix of per-class values (forest deep, bare shallow).
    - ``tau_gw``: 6 months in humid climates up to ~10 years in deserts (deep water tables, slow drainage);
      shortened over permafrost (T_ann < -5 deg C: only a shallow active layer).
    - ``tau_sw``: 0.7 month for plain rivers, up to ~4 months with wetlands and lakes.
    """
    land = np.maximum(frac[:8].sum(axis=0), 1e-6)
    smax = (SMAX_CLASS[:8, None] * frac[:8]).sum(axis=0) / land
    perma = np.clip((-5.0 - t_ann) / 5.0, 0, 1)
    tau_gw = (6.0 + 110.0 * np.clip(aridity, 0, 1) ** 2) * (1 - 0.7 * perma)
    wet = (frac[4] + frac[8] * 0.5) / np.maximum(land + frac[8] * 0.5, 1e-6)
    tau_sw = 0.7 + 8.0 * np.clip(wet, 0, 0.45)
    recharge = np.clip(0.25 + 0.3 * (1 - (frac[0] + frac[4]) / land), 0, 1) * (1 - 0.6 * perma)
    return Params(smax, tau_gw, tau_sw, recharge, np.clip(wet, 0, 0.3))


def step(state: dict[str, np.ndarray], p: Params, tp_mm: np.ndarray, pet_mm: np.ndarray, t_c: np.ndarray,
         days: float) -> dict[str, np.ndarray]:
    """Advance ``state`` (dict of STORES, mm, updated in place) by one month.

    Parameters
    ----------
    tp_mm, pet_mm : precipitation and potential evaporation totals over the month, mm (ncell,)
    t_c : monthly mean 2 m temperature, deg C
    days : length of the month

    Returns
    -------
    dict with ``et`` and ``runoff`` (mm per month, ncell) and the diagnostic ``melt``, ``recharge``.
    """
    snow, soil, gw, sw = state["snow"], state["soil"], state["gw"], state["sw"]
    fs = np.clip((1.5 - t_c) / 5.0, 0, 1)
    snowfall = fs * tp_mm
    snow += snowfall
    melt = np.minimum(snow, DDF * np.maximum(t_c, 0) * days)
    snow -= melt
    ice = np.maximum(snow - SWE_CAP, 0)
    snow -= ice
    liquid = tp_mm - snowfall + melt
    f_frz = np.clip(1 + (t_c + 1.0) / 4.0, 0.15, 1.0)
    inf = f_frz * liquid
    soil += inf
    cover = snow / (snow + 20.0)
    beta = np.clip(soil / (0.7 * p.smax), 0, 1)
    et_soil = np.minimum(soil, pet_mm * (1 - p.f_water) * beta * (1 - cover))
    soil -= et_soil
    excess = np.maximum(soil - p.smax, 0)
    soil -= excess
    drain = np.minimum(soil, K_DRAIN * f_frz * soil * (soil / p.smax) ** 2)
    soil -= drain
    recharge = p.recharge_frac * excess + drain
    gw += recharge
    base = gw * (1 - np.exp(-1.0 / p.tau_gw))
    gw -= base
    sw += (liquid - inf) + (1 - p.recharge_frac) * excess + base + ice
    et_sw = np.minimum(sw, pet_mm * p.f_water * (1 - cover))
    sw -= et_sw
    runoff = sw * (1 - np.exp(-1.0 / p.tau_sw))
    sw -= runoff
    return {"et": et_soil + et_sw, "runoff": runoff, "melt": melt, "recharge": recharge}


def new_state(ncell: int) -> dict[str, np.ndarray]:
    return {k: np.zeros(ncell) for k in STORES}


def total(state: dict[str, np.ndarray]) -> np.ndarray:
    return state["snow"] + state["soil"] + state["gw"] + state["sw"]


# ---------------------------------------------------------------------------------------------- unexplained
def _ramp_integral(t: np.ndarray, onset: float, ramp: float) -> np.ndarray:
    """Integral of clip((s - onset) / ramp, 0, 1) ds from -inf to t, in years."""
    tau = np.maximum(t - onset, 0.0)
    return np.where(tau < ramp, tau**2 / (2 * ramp), ramp / 2 + (tau - ramp))


def depletion_mm(t_years: np.ndarray, weights: list[np.ndarray], hotspots: list[dict]) -> np.ndarray:
    """Groundwater lost to pumping, mm (negative), shape (len(t), *weights[0].shape) (weights: fields or cells).

    Rate ramps linearly from 0 at ``onset`` to ``rate_mm_yr`` after ``ramp_yr``; pumping peaks in the dry
    season so a small seasonal cycle (15 % of the annual rate) rides on the decline.
    """
    t = np.asarray(t_years, dtype=float)
    out = np.zeros((len(t), *weights[0].shape))
    for w, h in zip(weights, hotspots, strict=True):
        rate = float(h["rate_mm_yr"])
        cum = _ramp_integral(t, float(h["onset"]), float(h["ramp_yr"])) * rate
        now = np.clip((t - float(h["onset"])) / float(h["ramp_yr"]), 0, 1) * rate
        season = 0.15 * now * np.cos(2 * np.pi * (t - np.floor(t) - 0.4))
        out -= (cum + season).reshape(-1, *([1] * w.ndim)) * w[None]
    return out


def ice_gt(t_years: np.ndarray, region: dict) -> np.ndarray:
    """Cumulative land-ice mass change since 1940, Gt, shape (len(t),)."""
    t = np.asarray(t_years, dtype=float)
    r, ref, on, f0 = (float(region[k]) for k in ("rate_gt_yr", "ref_year", "onset", "f0"))
    return r * (f0 * (t - 1940.0) + (1 - f0) * np.maximum(t - on, 0) ** 2 / (2 * (ref - on)))


def ice_rate_gt_yr(t_years: np.ndarray, region: dict) -> np.ndarray:
    """Mass-balance rate, Gt/yr, shape (len(t),)."""
    t = np.asarray(t_years, dtype=float)
    r, ref, on, f0 = (float(region[k]) for k in ("rate_gt_yr", "ref_year", "onset", "f0"))
    return r * (f0 + (1 - f0) * np.maximum(t - on, 0) / (ref - on))
