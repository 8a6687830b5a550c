"""The 13 ERA5 predictors: CDS names, short-name aliases, canonical units and the file units accepted.

Monthly means of accumulations (tp, e, pev, ssrd, strd) are means of *daily* accumulations, hence
m -> mm day-1 (x1000) and J m-2 (per day) -> W m-2 (/86400). Each accepted unit maps to
``(scale, offset)``: canonical = file value * scale + offset.
"""

from __future__ import annotations

from dataclasses import dataclass

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
class Era5Variable:
    """One predictor: CDS long name, canonical units after the reader, accepted file units."""

    cds_name: str
    long_name: str
    units: str
    accepted: dict[str, tuple[float, float]]
    aliases: tuple[str, ...] = ()


#: The 13 ERA5 predictors. Monthly means of accumulations are means of *daily* accumulations,
#: hence m → mm day⁻¹ (×1000) and J m⁻² (per day) → W m⁻² (÷86400).
VARIABLES: dict[str, Era5Variable] = {
    "t2m": Era5Variable("2m_temperature", "2 metre temperature", "K", _K, ("2t", "VAR_2T")),
    "d2m": Era5Variable("2m_dewpoint_temperature", "2 metre dewpoint temperature", "K", _K, ("2d", "VAR_2D")),
    "skt": Era5Variable("skin_temperature", "Skin temperature", "K", _K),
    "sp": Era5Variable("surface_pressure", "Surface pressure", "Pa", _PA),
    "u10": Era5Variable(
        "10m_u_component_of_wind", "10 metre U wind component", "m s-1", _MS, ("10u", "VAR_10U")
    ),
    "v10": Era5Variable(
        "10m_v_component_of_wind", "10 metre V wind component", "m s-1", _MS, ("10v", "VAR_10V")
    ),
    "tp": Era5Variable("total_precipitation", "Total precipitation", "mm day-1", _M_TO_MM),
    "e": Era5Variable("evaporation", "Evaporation (negative = from the surface)", "mm day-1", _M_TO_MM),
    "pev": Era5Variable("potential_evaporation", "Potential evaporation (negative)", "mm day-1", _M_TO_MM),
    "ssrd": Era5Variable(
        "surface_solar_radiation_downwards", "Surface solar radiation downwards", "W m-2", _J_TO_W
    ),
    "strd": Era5Variable(
        "surface_thermal_radiation_downwards", "Surface thermal radiation downwards", "W m-2", _J_TO_W
    ),
    "swvl1": Era5Variable(
        "volumetric_soil_water_layer_1", "Volumetric soil water layer 1 (0-7 cm)", "m3 m-3", _VOL
    ),
    "sd": Era5Variable("snow_depth", "Snow depth (water equivalent)", "mm", _SD),
}
_ALIAS = {a: k for k, v in VARIABLES.items() for a in v.aliases}
