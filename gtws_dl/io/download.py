"""Build (and optionally send) the requests that fetch the inputs gtws-dl reads.

* ERA5: Copernicus CDS API (``cdsapi``) requests for ``reanalysis-era5-single-levels-monthly-means``,
  product ``monthly_averaged_reanalysis``, in the 2024+ request syntax (``data_format``,
  ``download_format``). The CDS may still return a zip of ``…stepType-avgua.nc`` /
  ``…stepType-avgad.nc`` files for mixed instantaneous/accumulated variables; unzip it into the
  ERA5 directory — :func:`gtws_dl.io.era5.open_era5` reads the parts together.
* Mascons: the JPL CRI grid from PO.DAAC (Earthdata login; collection short name for
  ``earthaccess``), CSR and GSFC by HTTPS.

Nothing here touches the network unless :func:`retrieve_era5` is called (needs ``cdsapi``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence

from gtws_dl.io.era5_variables import VARIABLES

LOGGER = logging.getLogger(__name__)

ERA5_DATASET = "reanalysis-era5-single-levels-monthly-means"
ERA5_PRODUCT_TYPE = "monthly_averaged_reanalysis"

#: Mascon sources. ``{end}`` is the last month of the file as ``YYYYMM``.
MASCON_SOURCES: dict[str, dict[str, str]] = {
    "jpl": {
        "short_name": "TELLUS_GRAC-GRFO_MASCON_CRI_GRID_RL06.3_V4",
        "provider": "PO.DAAC (NASA Earthdata login required)",
        "url": (
            "https://archive.podaac.earthdata.nasa.gov/podaac-ops-cumulus-protected/"
            "TELLUS_GRAC-GRFO_MASCON_CRI_GRID_RL06.3_V4/GRCTellus.JPL.200204_{end}.GLO.RL06.3M.MSCNv04CRI.nc"
        ),
        "gain_factor_file": "CLM4.SCALE_FACTOR.JPL.MSCNv04CRI.nc",
        "land_mask_file": "LAND_MASK.CRI.nc",
    },
    "csr": {
        "provider": "UT Austin CSR (public HTTPS)",
        "url": (
            "https://download.csr.utexas.edu/outgoing/grace/RL0603_mascons/"
            "CSR_GRACE_GRACE-FO_RL0603_Mascons_all-corrections.nc"
        ),
        "land_mask_url": (
            "https://download.csr.utexas.edu/outgoing/grace/RL0603_mascons/"
            "CSR_GRACE_GRACE-FO_RL06_Mascons_v02_LandMask.nc"
        ),
    },
    "gsfc": {
        "provider": "NASA GSFC (public HTTPS)",
        "url": (
            "https://earth.gsfc.nasa.gov/sites/default/files/geo/"
            "gsfc.glb_.200204_{end}_rl06v2.0_obp-ice6gd_halfdegree.nc"
        ),
    },
}


class MissingDependencyError(ImportError):
    """An optional package needed for downloading is not installed."""


def _months(months: Iterable[int]) -> list[str]:
    out = []
    for m in months:
        m = int(m)
        if not 1 <= m <= 12:
            raise ValueError(f"month must be 1..12, got {m}")
        out.append(f"{m:02d}")
    return out


def _area(area: Sequence[float] | None) -> list[float] | None:
    if area is None:
        return None
    if len(area) != 4:
        raise ValueError(f"area must be [North, West, South, East] in degrees, got {list(area)}")
    n, w, s, e = (float(v) for v in area)
    if not (-90 <= s < n <= 90):
        raise ValueError(f"area must be [North, West, South, East] with South < North, got {list(area)}")
    return [n, w, s, e]


def era5_request(
    years: Iterable[int],
    months: Iterable[int] = range(1, 13),
    variables: Sequence[str] | None = None,
    *,
    area: Sequence[float] | None = None,
    download_format: str = "unarchived",
) -> tuple[str, dict]:
    """The CDS dataset name and request dict for ERA5 monthly means.

    Parameters
    ----------
    years : iterable of int
    months : iterable of int (1..12)
    variables : ERA5 short names (default: all 13 of :data:`gtws_dl.io.era5_variables.VARIABLES`)
    area : [North, West, South, East], optional (degrees; default global)
    download_format : "unarchived" or "zip"
    """
    shorts = list(variables) if variables is not None else list(VARIABLES)
    unknown = [v for v in shorts if v not in VARIABLES]
    if unknown:
        raise ValueError(f"unknown ERA5 short names {unknown}; known: {list(VARIABLES)}")
    if download_format not in ("unarchived", "zip"):
        raise ValueError(f"download_format must be 'unarchived' or 'zip', got {download_format!r}")
    yrs = sorted({int(y) for y in years})
    if not yrs or yrs[0] < 1940:
        raise ValueError(f"years must be non-empty and >= 1940 (ERA5 start), got {yrs}")
    req: dict = {
        "product_type": [ERA5_PRODUCT_TYPE],
        "variable": [VARIABLES[v].cds_name for v in shorts],
        "year": [str(y) for y in yrs],
        "month": _months(months),
        "time": ["00:00"],
        "data_format": "netcdf",
        "download_format": download_format,
    }
    a = _area(area)
    if a is not None:
        req["area"] = a
    return ERA5_DATASET, req


def era5_requests_by_year(first: int, last: int, **kwargs) -> list[tuple[str, dict, str]]:
    """One request per year (keeps each CDS job small): ``(dataset, request, target file name)``."""
    out = []
    for y in range(int(first), int(last) + 1):
        ds, req = era5_request([y], **kwargs)
        out.append((ds, req, f"era5_monthly_{y}.nc"))
    return out


def era5_update_requests(cube_manifest: Mapping, until: str, **kwargs) -> list[tuple[str, dict, str]]:
    """The requests a monthly update needs (``gtws-dl update``), one per calendar year:
    ``(dataset, request, target file name)``.

    They cover the cube's ERA5T months (``cube_manifest["era5t_months"]``, fetched again as final ERA5 once ECMWF
    has published it, about 2-3 months later) and the months after its last one, up to ``until`` (``"YYYY-MM"``;
    ERA5T monthly means of a month appear about 5 days after it ends). Target names carry the months
    (``era5_monthly_2024_10-12.nc``), so the downloads sit beside the yearly files without replacing them: the
    reader prefers final ERA5 over ERA5T where a month is in both. ``kwargs`` go to :func:`era5_request`
    (``variables``, ``area``)."""
    import pandas as pd  # noqa: PLC0415 - light module otherwise

    end = pd.Period(str(cube_manifest["time"]["end"]), freq="M")
    prelim = sorted(str(m) for m in (cube_manifest.get("era5t_months") or []))
    first = pd.Period(prelim[0], freq="M") if prelim else end + 1
    last = pd.Period(str(until), freq="M")
    if last < first:
        raise ValueError(f"until={until!r} is before the first month the update needs ({first}); the cube ends "
                         f"{end} with ERA5T months {prelim or 'none'}")
    out = []
    months = pd.period_range(first, last, freq="M")
    for year in sorted(set(months.year)):
        mos = [int(m.month) for m in months if m.year == year]
        ds, req = era5_request([year], mos, **kwargs)
        out.append((ds, req, f"era5_monthly_{year}_{mos[0]:02d}-{mos[-1]:02d}.nc"))
    return out


def retrieve_era5(dataset: str, request: dict, target: str | os.PathLike) -> str:
    """Send one request with ``cdsapi`` (requires ``pip install cdsapi`` and ``~/.cdsapirc``)."""
    try:
        import cdsapi  # noqa: PLC0415 - optional dependency
    except ImportError as exc:
        raise MissingDependencyError(
            "downloading ERA5 needs the Copernicus CDS client: `pip install cdsapi`, then put your "
            "API key in ~/.cdsapirc (https://cds.climate.copernicus.eu/how-to-api)"
        ) from exc
    LOGGER.info("CDS request %s -> %s", dataset, target)
    cdsapi.Client().retrieve(dataset, request, str(target))
    return str(target)


def mascon_source(centre: str, end: str | None = None) -> dict[str, str]:
    """Download information for a centre; ``end`` (``"YYYY-MM"``) fills the file name's last month."""
    c = centre.lower()
    if c not in MASCON_SOURCES:
        raise ValueError(f"centre must be one of {list(MASCON_SOURCES)}, got {centre!r}")
    info = dict(MASCON_SOURCES[c])
    if "{end}" in info["url"]:
        if end is None:
            raise ValueError(f"{c} file names carry the last month; pass end='YYYY-MM'")
        info["url"] = info["url"].format(end=end.replace("-", "")[:6])
    return info
