"""Region masks shipped offline: global land, continents (incl. Greenland and Antarctica), user polygons.

Continents come from ``gtws_dl/data/continents.geojson``, a coarse polygon set authored for this
package (lon/lat degrees, lon -180..180). Polygons may overlap over the ocean; a point belongs to
the *first* polygon (in the file's ``priority`` order: greenland, antarctica, south_america,
africa, europe, asia, north_america, oceania) whose interior holds it (regionmask, cell centres),
and a land cell outside every polygon takes the nearest polygon (planar distance in degrees, with
the ±360° copy of the point tried too). Every land cell therefore belongs to exactly one continent.

Areas: the GLOBE 30" mask counts *grounded* Antarctica (ice sheet without floating ice shelves,
≈ 12.3e6 km²), not the 14.0e6 km² that includes the shelves.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import xarray as xr

from gtws_dl.grid import Grid
from gtws_dl.landmask import land_mask

LOGGER = logging.getLogger(__name__)

CONTINENTS: tuple[str, ...] = (
    "greenland", "antarctica", "south_america", "africa", "europe", "asia", "north_america", "oceania",
)  # fmt: skip
GLOBAL_MASKS: tuple[str, ...] = ("global_land", "global_land_excl_greenland_antarctica")
REGION_KEYS: tuple[str, ...] = GLOBAL_MASKS + (
    "greenland", "antarctica", "africa", "asia", "europe", "north_america", "south_america", "oceania",
)  # fmt: skip
# the two regions every skill summary reports (key: display name), from :func:`evaluation_masks`
EVALUATION_REGIONS: dict[str, str] = {"land": "land excl. Greenland & Antarctica", "ice": "Greenland & Antarctica"}


def _default_path() -> Path:
    return Path(str(resources.files("gtws_dl") / "data" / "continents.geojson"))


@lru_cache(maxsize=4)
def _load(path: str):
    import regionmask
    from shapely.geometry import shape

    with open(path) as f:
        doc = json.load(f)
    feats = sorted(doc["features"], key=lambda ft: ft["properties"]["priority"])
    names = [ft["properties"]["name"] for ft in feats]
    geoms = [shape(ft["geometry"]) for ft in feats]
    regions = regionmask.Regions(
        geoms, numbers=list(range(len(names))), names=names, abbrevs=names, name="gtws_dl_continents",
        overlap=True,
    )  # fmt: skip
    return tuple(names), tuple(geoms), regions


def load_continents(path: str | Path | None = None) -> tuple[list[str], list]:
    """Continent names (priority order) and their shapely (Multi)Polygons from the GeoJSON."""
    names, geoms, _ = _load(str(path or _default_path()))
    return list(names), list(geoms)


def _mask3d(regions, lon: np.ndarray, lat: np.ndarray, wrap_lon) -> np.ndarray:
    with warnings.catch_warnings():  # regionmask's affine transform warns about `*` (not ours to fix)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return regions.mask_3D(lon, lat, drop=False, wrap_lon=wrap_lon).values


def _first_hit(mask3d: np.ndarray) -> np.ndarray:
    """(region, ...) bool -> index of the first True along axis 0, -1 where none."""
    hit = mask3d.any(axis=0)
    return np.where(hit, np.argmax(mask3d, axis=0), -1)


def _nearest(geoms: Sequence, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    import shapely

    dist = np.full((len(geoms), lon.size), np.inf)
    for shift in (0.0, 360.0, -360.0):
        pts = shapely.points(lon + shift, lat)
        for k, g in enumerate(geoms):
            dist[k] = np.minimum(dist[k], shapely.distance(g, pts))
    return np.argmin(dist, axis=0)


def continents(
    grid: Grid, land: np.ndarray | None = None, *, path: str | Path | None = None
) -> tuple[np.ndarray, list[str]]:
    """Continent id of every land cell.

    Parameters
    ----------
    grid : Grid
    land : bool array (nlat, nlon), optional
        Land mask; default :func:`gtws_dl.landmask.land_mask` (land fraction ≥ 0.5).
    path : GeoJSON with ``name`` and ``priority`` properties; default the packaged continents.

    Returns
    -------
    ids : int16 array (nlat, nlon)
        Index into ``names`` for land cells, -1 over ocean.
    names : list of str
    """
    land = _check_land(grid, land)
    names, geoms, regions = _load(str(path or _default_path()))
    m3 = _mask3d(regions, grid.lon, grid.lat, False)  # (region, lat, lon)
    ids = _first_hit(m3)
    miss = land & (ids < 0)
    if miss.any():
        ii, jj = np.nonzero(miss)
        ids[ii, jj] = _nearest(geoms, grid.lon[jj], grid.lat[ii])
        LOGGER.debug("%d land cells outside all continent polygons: nearest polygon used", miss.sum())
    ids = np.where(land, ids, -1).astype(np.int16)
    return ids, list(names)


def continent_of(lon: np.ndarray, lat: np.ndarray, *, path: str | Path | None = None) -> np.ndarray:
    """Continent index of points (same rules as :func:`continents`, land or not), shape of ``lon``."""
    lon, lat = np.broadcast_arrays(np.asarray(lon, float), np.asarray(lat, float))
    names, geoms, regions = _load(str(path or _default_path()))
    flat_lon, flat_lat = lon.ravel(), lat.ravel()
    m3 = _mask3d(regions, flat_lon[None, :], flat_lat[None, :], False)[:, 0]
    ids = _first_hit(m3)
    miss = ids < 0
    if miss.any():
        ids[miss] = _nearest(geoms, flat_lon[miss], flat_lat[miss])
    return ids.reshape(lon.shape)


def region_masks(
    grid: Grid,
    land: np.ndarray | None = None,
    *,
    path: str | Path | None = None,
    as_dataarray: bool = False,
) -> dict[str, np.ndarray] | xr.DataArray:
    """Standard region masks (keys :data:`REGION_KEYS`), bool (nlat, nlon).

    ``global_land`` is the land mask itself (= union of the continents);
    ``global_land_excl_greenland_antarctica`` removes exactly those two continents.
    With ``as_dataarray`` a CF-attributed ``(region, lat, lon)`` DataArray is returned instead.
    """
    land = _check_land(grid, land)
    ids, names = continents(grid, land, path=path)
    out: dict[str, np.ndarray] = {"global_land": land.copy()}
    per = {name: ids == k for k, name in enumerate(names)}
    missing = sorted(set(CONTINENTS) - set(per))
    if missing:
        raise ValueError(f"continents file {path or _default_path()} lacks {missing}; it has {names}")
    out["global_land_excl_greenland_antarctica"] = land & ~per["greenland"] & ~per["antarctica"]
    for key in REGION_KEYS[2:]:
        out[key] = per[key]
    return masks_to_dataarray(out, grid) if as_dataarray else out


def evaluation_masks(masks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The masks of :data:`EVALUATION_REGIONS` (same keys) from those of :func:`region_masks`."""
    return {"land": masks["global_land_excl_greenland_antarctica"], "ice": masks["greenland"] | masks["antarctica"]}


def user_regions(
    path: str | Path,
    grid: Grid,
    land: np.ndarray | None = None,
    *,
    name_field: str,
    as_dataarray: bool = False,
) -> dict[str, np.ndarray] | xr.DataArray:
    """Masks of user polygons (GeoJSON, shapefile, GeoPackage ...) over land, by cell centre.

    Polygons may overlap (a cell can be in several regions). Geometries are reprojected to
    EPSG:4326 when the file declares another CRS. Returns ``{value of name_field: bool (nlat, nlon)}``.
    """
    import geopandas as gpd
    import regionmask

    land = _check_land(grid, land)
    gdf = gpd.read_file(path)
    if name_field not in gdf.columns:
        raise ValueError(
            f"{path}: field {name_field!r} not found; available fields: {sorted(c for c in gdf.columns if c != 'geometry')}"
        )
    if gdf.crs is not None and gdf.crs.to_epsg() != 4326:
        gdf = gdf.to_crs(4326)
    names = [str(v) for v in gdf[name_field]]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: values of {name_field!r} are not unique: {names}")
    regions = regionmask.from_geopandas(gdf.reset_index(drop=True), names=name_field, overlap=True)
    m3 = _mask3d(regions, grid.lon, grid.lat, 180)
    out = {name: m3[k] & land for k, name in enumerate(names)}
    return masks_to_dataarray(out, grid) if as_dataarray else out


def masks_to_dataarray(masks: dict[str, np.ndarray], grid: Grid) -> xr.DataArray:
    """Stack masks into a CF-attributed boolean DataArray (region, lat, lon)."""
    names = list(masks)
    da = xr.DataArray(
        np.stack([np.asarray(masks[n], bool) for n in names]),
        dims=("region", "lat", "lon"),
        coords={
            "region": ("region", names, {"long_name": "region name"}),
            "lat": ("lat", grid.lat, {"standard_name": "latitude", "units": "degrees_north"}),
            "lon": ("lon", grid.lon, {"standard_name": "longitude", "units": "degrees_east"}),
        },
        name="region_mask",
        attrs={"long_name": "region mask (True = cell centre in region and on land)", "flag_values": [0, 1],
               "flag_meanings": "outside inside"},
    )  # fmt: skip
    return da


def _check_land(grid: Grid, land: np.ndarray | None) -> np.ndarray:
    if land is None:
        return land_mask(grid)
    land = np.asarray(land)
    if land.shape != grid.shape:
        raise ValueError(f"land mask has shape {land.shape}, expected the grid shape {grid.shape} ({grid})")
    if land.dtype != bool:
        if np.issubdtype(land.dtype, np.floating):
            raise ValueError(
                f"land mask must be boolean, got {land.dtype}; for a land fraction pass e.g. `fraction >= 0.5`"
            )
        land = land.astype(bool)
    return land
