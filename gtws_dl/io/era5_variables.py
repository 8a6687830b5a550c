"""The 13 ERA5 predictors: CDS names, short-name aliases, canonical units and the file units accepted.

Monthly means of accumulations (tp, e, pev, ssrd, strd) are means of *daily* accumulations, hence
m -> mm day-1 (x1000) and J m-2 (per day) -> W m-2 (/86400). Each accepted unit maps to
``(scale, offset)``: canonical = file value * scale + offset.

``bounds`` (:class:`Bounds`, canonical units) is what :mod:`gtws_dl.io.plausibility` checks every value
against before the reader converts anything (issue 17: no silent wrong answers).
"""

from __future__ import annotations

from dataclasses import dataclass, field

_DAYS_PER_MONTH = 30.44  # mean month length: a monthly *total* read as a daily-mean rate is ~30x too large

_M_TO_MM = {
    "m": (1000.0, 0.0),
    "m of water equivalent": (1000.0, 0.0),
    "m day-1": (1000.0, 0.0),
    "m d-1": (1000.0, 0.0),
    "m/day": (1000.0, 0.0),
    "mm day-1": (1.0, 0.0),
    "mm d-1": (1.0, 0.0),
    "mm/day": (1.0, 0.0),
}
_J_TO_W = {
    "J m-2": (1.0 / 86400.0, 0.0),
    "J/m2": (1.0 / 86400.0, 0.0),
    "J m-2 day-1": (1.0 / 86400.0, 0.0),
    "W m-2": (1.0, 0.0),
    "W/m2": (1.0, 0.0),
}
_K = {"K": (1.0, 0.0), "kelvin": (1.0, 0.0)}
_PA = {"Pa": (1.0, 0.0), "hPa": (100.0, 0.0)}
_MS = {"m s-1": (1.0, 0.0), "m/s": (1.0, 0.0)}
_VOL = {"m3 m-3": (1.0, 0.0), "m3/m3": (1.0, 0.0), "1": (1.0, 0.0)}
_SD = {
    "m of water equivalent": (1000.0, 0.0),
    "m": (1000.0, 0.0),
    "m w.e.": (1000.0, 0.0),
    "mm": (1.0, 0.0),
    "kg m-2": (1.0, 0.0),
}


@dataclass(frozen=True)
class Bounds:
    """Plausible values of one variable in its canonical units (checked by :mod:`gtws_dl.io.plausibility`).

    ``lo``/``hi``: every finite value must lie inside (physical range, with a margin for packing noise).
    ``typical``: ``(statistic, lo, hi)`` on a robust statistic of the values, ``statistic`` one of ``"p99"``
    (99th percentile), ``"p99abs"`` (99th percentile of |x|), ``"spread"`` (95th minus 5th percentile); catches a
    wrong scale that stays inside the physical range for most cells. ``hints``: ``(description, scale, offset)``
    re-interpretations of the canonical values tried (before the other accepted units of the variable) to say
    which unit the magnitude suggests. ``what``: the quantity, for the message. ``positive_max``: the largest
    fraction of values above 0 (a flux the ECMWF convention counts negative, e.g. evaporation: a flipped sign).
    ``constant_ok``: a time step may hold one value everywhere (no snow, polar night); for the others a constant
    field is a placeholder (0 or a fill where a month is missing). ``gaps_ok``: a time step may be all-NaN (a
    GRACE month without a solution); ERA5 has data in every month, so an all-NaN one is an incomplete download.
    """

    lo: float
    hi: float
    what: str
    typical: tuple[str, float, float] | None = None
    hints: tuple[tuple[str, float, float], ...] = ()
    positive_max: float | None = None
    constant_ok: bool = False
    gaps_ok: bool = False


_CELSIUS = (("degrees Celsius labelled 'K'", 1.0, 273.15),)
_SIGN = (("of the opposite sign (ECMWF counts it negative when water leaves the surface)", -1.0, 0.0),)
_MONTHLY_TOTAL = (
    (
        f"monthly totals (per month, not per day) labelled as a daily-mean rate (÷{_DAYS_PER_MONTH:g})",
        1.0 / _DAYS_PER_MONTH,
        0.0,
    ),
)


@dataclass(frozen=True)
class Era5Variable:
    """One predictor: CDS long name, canonical units after the reader, accepted file units."""

    cds_name: str
    long_name: str
    units: str
    accepted: dict[str, tuple[float, float]]
    aliases: tuple[str, ...] = ()
    bounds: Bounds | None = field(default=None, compare=False)


#: The 13 ERA5 predictors. Monthly means of accumulations are means of *daily* accumulations,
#: hence m → mm day⁻¹ (×1000) and J m⁻² (per day) → W m⁻² (÷86400).
VARIABLES: dict[str, Era5Variable] = {
    "t2m": Era5Variable(
        "2m_temperature",
        "2 metre temperature",
        "K",
        _K,
        ("2t", "VAR_2T"),
        bounds=Bounds(170.0, 340.0, "monthly-mean 2 metre temperature", hints=_CELSIUS),
    ),
    "d2m": Era5Variable(
        "2m_dewpoint_temperature",
        "2 metre dewpoint temperature",
        "K",
        _K,
        ("2d", "VAR_2D"),
        bounds=Bounds(170.0, 340.0, "monthly-mean 2 metre dewpoint", hints=_CELSIUS),
    ),
    "skt": Era5Variable(
        "skin_temperature",
        "Skin temperature",
        "K",
        _K,
        bounds=Bounds(170.0, 345.0, "monthly-mean skin temperature", hints=_CELSIUS),
    ),
    "sp": Era5Variable(
        "surface_pressure",
        "Surface pressure",
        "Pa",
        _PA,
        bounds=Bounds(4.0e4, 1.1e5, "surface pressure", hints=(("kPa labelled 'Pa'", 1000.0, 0.0),)),
    ),
    "u10": Era5Variable(
        "10m_u_component_of_wind",
        "10 metre U wind component",
        "m s-1",
        _MS,
        ("10u", "VAR_10U"),
        bounds=Bounds(-50.0, 50.0, "monthly-mean 10 m wind component"),
    ),
    "v10": Era5Variable(
        "10m_v_component_of_wind",
        "10 metre V wind component",
        "m s-1",
        _MS,
        ("10v", "VAR_10V"),
        bounds=Bounds(-50.0, 50.0, "monthly-mean 10 m wind component"),
    ),
    "tp": Era5Variable(
        "total_precipitation",
        "Total precipitation",
        "mm day-1",
        _M_TO_MM,
        bounds=Bounds(
            -0.1, 300.0, "monthly-mean precipitation rate", typical=("p99", -0.1, 60.0), hints=_MONTHLY_TOTAL
        ),
    ),
    "e": Era5Variable(
        "evaporation",
        "Evaporation (negative = from the surface)",
        "mm day-1",
        _M_TO_MM,
        bounds=Bounds(
            -30.0, 10.0, "monthly-mean evaporation rate", typical=("p99abs", 0.0, 20.0),
            hints=(*_SIGN, *_MONTHLY_TOTAL), positive_max=0.75,
        ),
    ),
    "pev": Era5Variable(
        "potential_evaporation",
        "Potential evaporation (negative)",
        "mm day-1",
        _M_TO_MM,
        bounds=Bounds(
            -80.0,
            25.0,
            "monthly-mean potential evaporation rate",
            typical=("p99abs", 0.0, 50.0),
            hints=(*_SIGN, *_MONTHLY_TOTAL),
            positive_max=0.75,
        ),
    ),
    "ssrd": Era5Variable(
        "surface_solar_radiation_downwards",
        "Surface solar radiation downwards",
        "W m-2",
        _J_TO_W,
        bounds=Bounds(-1.0, 600.0, "monthly-mean downward solar radiation", hints=_MONTHLY_TOTAL,
                      constant_ok=True),  # 0 all month in a polar night
    ),
    "strd": Era5Variable(
        "surface_thermal_radiation_downwards",
        "Surface thermal radiation downwards",
        "W m-2",
        _J_TO_W,
        bounds=Bounds(50.0, 550.0, "monthly-mean downward thermal radiation", hints=_MONTHLY_TOTAL),
    ),
    "swvl1": Era5Variable(
        "volumetric_soil_water_layer_1",
        "Volumetric soil water layer 1 (0-7 cm)",
        "m3 m-3",
        _VOL,
        bounds=Bounds(-0.01, 1.0, "volumetric soil water", hints=(("percent labelled 'm3 m-3'", 0.01, 0.0),),
                      constant_ok=True),  # a box inside an ice sheet may hold one value on its glacier points
    ),
    "sd": Era5Variable(
        "snow_depth",
        "Snow depth (water equivalent)",
        "mm",
        _SD,
        bounds=Bounds(-1.0, 1.0e5, "snow depth (water equivalent)", constant_ok=True),  # no snow: 0 everywhere
    ),
}
_ALIAS = {a: k for k, v in VARIABLES.items() for a in v.aliases}
