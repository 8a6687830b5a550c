"""Twin Earth options: one validated dataclass built from ``conf/twin/default.yaml`` or keyword arguments."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gtws_dl.conventions import BASELINE
from gtws_dl.hashing import sha256_json


class TwinConfigError(ValueError):
    """A twin option that cannot be used (unknown key, bad value)."""


# Groundwater depletion hot spots: human pumping the forcing cannot explain.
# centre (lat, lon) deg, e-folding radius km, peak depletion rate at the centre mm/yr, onset year,
# years to ramp from onset to the full rate. Rates/onsets after Rodell et al. 2018, Famiglietti 2014.
DEFAULT_HOTSPOTS: list[dict[str, Any]] = [
    {"name": "nw_india", "lat": 29.0, "lon": 76.0, "radius_km": 350.0, "rate_mm_yr": 30.0, "onset": 1970, "ramp_yr": 25},
    {"name": "north_china_plain", "lat": 37.5, "lon": 115.5, "radius_km": 300.0, "rate_mm_yr": 22.0, "onset": 1975, "ramp_yr": 20},
    {"name": "california_central_valley", "lat": 36.5, "lon": -119.8, "radius_km": 220.0, "rate_mm_yr": 20.0, "onset": 1960, "ramp_yr": 30},
    {"name": "middle_east", "lat": 34.0, "lon": 46.0, "radius_km": 400.0, "rate_mm_yr": 25.0, "onset": 1980, "ramp_yr": 25},
    {"name": "arabia", "lat": 25.5, "lon": 45.5, "radius_km": 350.0, "rate_mm_yr": 15.0, "onset": 1978, "ramp_yr": 15},
    {"name": "high_plains", "lat": 36.5, "lon": -101.5, "radius_km": 300.0, "rate_mm_yr": 12.0, "onset": 1955, "ramp_yr": 20},
]

# Land ice: mass-balance rate in Gt/yr at `ref_year` (negative = loss), distributed over a region.
# Rate(t) = rate_ref * (f0 + (1 - f0) * max(0, t - onset) / (ref_year - onset)): near balance (f0) before the
# onset, accelerating linearly afterwards (Greenland ~-270 Gt/yr 2002-2020, Antarctica ~-150 Gt/yr; IMBIE).
DEFAULT_ICE: list[dict[str, Any]] = [
    {"name": "greenland", "kind": "sheet", "lat": 72.0, "lon": -40.0, "radius_km": 900.0, "rate_gt_yr": -260.0,
     "ref_year": 2010.0, "onset": 1990.0, "f0": 0.1},
    {"name": "amundsen_sea", "kind": "sheet", "lat": -76.0, "lon": -108.0, "radius_km": 450.0, "rate_gt_yr": -120.0,
     "ref_year": 2010.0, "onset": 1990.0, "f0": 0.15},
    {"name": "antarctic_peninsula", "kind": "sheet", "lat": -66.5, "lon": -63.0, "radius_km": 300.0, "rate_gt_yr": -30.0,
     "ref_year": 2010.0, "onset": 1995.0, "f0": 0.1},
    {"name": "alaska", "kind": "glacier", "lat": 61.0, "lon": -145.0, "radius_km": 350.0, "rate_gt_yr": -60.0,
     "ref_year": 2010.0, "onset": 1990.0, "f0": 0.3},
    {"name": "patagonia", "kind": "glacier", "lat": -49.0, "lon": -73.5, "radius_km": 250.0, "rate_gt_yr": -25.0,
     "ref_year": 2010.0, "onset": 1990.0, "f0": 0.3},
    {"name": "high_mountain_asia", "kind": "glacier", "lat": 31.0, "lon": 90.0, "radius_km": 600.0, "rate_gt_yr": -20.0,
     "ref_year": 2010.0, "onset": 1990.0, "f0": 0.3},
    {"name": "canadian_arctic", "kind": "glacier", "lat": 78.0, "lon": -80.0, "radius_km": 400.0, "rate_gt_yr": -50.0,
     "ref_year": 2010.0, "onset": 1995.0, "f0": 0.2},
]


@dataclass
class TwinConfig:
    """All options of the twin Earth (see ``conf/twin/default.yaml`` for the meaning and units)."""

    seed: int = 0
    start: str = "1940-01"
    end: str = "2024-12"
    era5_layout: str = "new"  # "new" (CDS since 2024-09) or "old" (grib_to_netcdf, int16 packed)
    era5_per_year: bool = True  # one file pair per year (True) or one for the whole record
    era5t_months: int = 3  # last months flagged ERA5T (expver 0005)
    era5t_revision: float = 0.0  # log-sd by which ERA5T tp and e differ from the final ERA5 of those months
    era5_tp_error: float = 0.12  # multiplicative ERA5 precip error (log-sd) after 1979
    era5_tp_error_early: float = 0.25  # ... before 1979 (no satellites)
    era5_e_error: float = 0.15  # multiplicative ERA5 evaporation error (log-sd)
    swvl1_noise: float = 0.02  # m3 m-3, monthly noise of ERA5 top-layer soil water
    sd_error: float = 0.25  # multiplicative ERA5 snow error (log-sd)
    weather_noise: float = 1.0  # scales all spatially correlated weather noise
    footprint_km: float = 300.0  # GRACE Gaussian footprint, half width at half maximum, km
    grace_noise_mm: dict[str, float] = field(default_factory=lambda: {"jpl": 15.0, "csr": 20.0, "gsfc": 18.0})
    grace_noise_km: float = 600.0  # correlation length of GRACE noise, km
    grace_res: dict[str, float] = field(default_factory=lambda: {"jpl": 0.5, "csr": 0.25, "gsfc": 0.5})
    gsfc_time_last: bool = True  # store GSFC lwe_thickness as (lat, lon, time)
    hotspots: list[dict[str, Any]] = field(default_factory=lambda: [dict(h) for h in DEFAULT_HOTSPOTS])
    ice: list[dict[str, Any]] = field(default_factory=lambda: [dict(i) for i in DEFAULT_ICE])
    overwrite: bool = False
    progress: bool = True
    memory_gb: float = 1.0  # working set of the passes over the written record (anomalies, diagnostics); same output

    def __post_init__(self) -> None:
        if self.era5_layout not in ("new", "old"):
            raise TwinConfigError(f"twin.era5_layout must be 'new' or 'old', got {self.era5_layout!r}")
        try:
            t0, t1 = np.datetime64(self.start, "M"), np.datetime64(self.end, "M")
        except ValueError as exc:
            raise TwinConfigError(f"twin.start/end must be 'YYYY-MM', got {self.start!r}, {self.end!r}") from exc
        if t1 < t0:
            raise TwinConfigError(f"twin.end {self.end} is before twin.start {self.start}")
        if t0 > np.datetime64(BASELINE[0], "M") or t1 < np.datetime64(BASELINE[1], "M"):
            raise TwinConfigError(
                f"twin period {self.start}..{self.end} must contain the {BASELINE[0]}..{BASELINE[1]} "
                "anomaly baseline"
            )
        if not (0 <= int(self.era5t_months) <= 24):
            raise TwinConfigError(f"twin.era5t_months must be in 0..24, got {self.era5t_months}")
        if not (0.0 <= float(self.era5t_revision) <= 1.0):
            raise TwinConfigError(f"twin.era5t_revision must be in 0..1 (log-sd), got {self.era5t_revision}")
        if self.footprint_km <= 0:
            raise TwinConfigError(f"twin.footprint_km must be > 0 km, got {self.footprint_km}")
        for c in ("jpl", "csr", "gsfc"):
            if c not in self.grace_noise_mm or c not in self.grace_res:
                raise TwinConfigError(f"twin.grace_noise_mm and twin.grace_res need jpl, csr, gsfc; missing {c}")
        self.seed = int(self.seed)
        self.era5t_months = int(self.era5t_months)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None = None, **overrides: Any) -> TwinConfig:
        """Build from a (possibly OmegaConf) mapping plus keyword overrides; unknown keys raise."""
        d: dict[str, Any] = {}
        if values is not None:
            try:
                from omegaconf import DictConfig, OmegaConf

                if isinstance(values, DictConfig):
                    values = OmegaConf.to_container(values, resolve=True)
            except ImportError:  # pragma: no cover
                pass
            d.update(values)
        d.update(overrides)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise TwinConfigError(f"unknown twin option(s) {unknown}; known: {sorted(names)}")
        return cls(**d)

    @property
    def months(self) -> np.ndarray:
        """Month-start times of the period, ``datetime64[ns]``, shape (T,)."""
        m = np.arange(np.datetime64(self.start, "M"), np.datetime64(self.end, "M") + 1)
        return m.astype("datetime64[ns]")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self, extra: Mapping[str, Any] | None = None) -> str:
        """Hash of everything that changes the output (not ``overwrite``/``progress``/``memory_gb``)."""
        d = self.to_dict()
        d.pop("overwrite")
        d.pop("progress")
        d.pop("memory_gb")
        if not d["era5t_revision"]:  # the default: fingerprints of twins made before the option unchanged
            d.pop("era5t_revision")
        d.update(extra or {})
        return sha256_json(d, length=16)
