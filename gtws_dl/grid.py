"""The target grid: regular lat/lon cells, latitude ascending, longitude in -180..180.

One helper (:meth:`Grid.cell_area`) gives the cell areas that every area-weighted
mean (mm) and sum (Gt) in the package uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

EARTH_RADIUS_M = 6_371_008.8  # mean Earth radius (IUGG), m
_EPS = 1e-9


class GridError(ValueError):
    """A grid definition that cannot describe a regular lat/lon grid."""


@dataclass(frozen=True)
class Grid:
    """Regular lat/lon grid of cell centres.

    Parameters
    ----------
    res : float
        Cell size in degrees (same in lat and lon). Must divide the domain.
    bbox : (lon0, lon1, lat0, lat1), optional
        Domain in degrees, lon in -180..180, lat in -90..90. ``None`` means the globe.
    """

    res: float
    bbox: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        if not np.isfinite(self.res) or self.res <= 0 or self.res > 90:
            raise GridError(f"grid.res must be in (0, 90] degrees, got {self.res!r}")
        if self.bbox is not None:
            if len(self.bbox) != 4:
                raise GridError(f"grid.bbox must be [lon0, lon1, lat0, lat1], got {list(self.bbox)!r}")
            bbox = tuple(float(v) for v in self.bbox)
            object.__setattr__(self, "bbox", bbox)
        lon0, lon1, lat0, lat1 = self.bounds
        if not (-180 - _EPS <= lon0 < lon1 <= 180 + _EPS):
            raise GridError(f"grid.bbox longitudes must satisfy -180 <= lon0 < lon1 <= 180, got {lon0}, {lon1}")
        if not (-90 - _EPS <= lat0 < lat1 <= 90 + _EPS):
            raise GridError(f"grid.bbox latitudes must satisfy -90 <= lat0 < lat1 <= 90, got {lat0}, {lat1}")
        for name, span in (("longitude", lon1 - lon0), ("latitude", lat1 - lat0)):
            n = span / self.res
            if abs(n - round(n)) > 1e-6:
                raise GridError(
                    f"grid.res={self.res} does not divide the {name} span {span} deg of the domain "
                    f"{self.bounds}; choose a resolution that does (e.g. 0.25, 0.5, 1, 2)"
                )
        for name, edge in (("lon0", lon0), ("lat0", lat0)):
            k = (edge + 180) / self.res
            if abs(k - round(k)) > 1e-6:
                raise GridError(
                    f"grid.bbox {name}={edge} is not on the global {self.res} deg lattice; "
                    f"use a multiple of {self.res}"
                )

    @classmethod
    def from_config(cls, res: float, bbox: Sequence[float] | None = None) -> Grid:
        """Build from Hydra values (``bbox`` may be a ListConfig or None)."""
        return cls(float(res), None if bbox is None else tuple(float(v) for v in bbox))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(lon0, lon1, lat0, lat1) in degrees."""
        return self.bbox if self.bbox is not None else (-180.0, 180.0, -90.0, 90.0)

    @property
    def nlat(self) -> int:
        lon0, lon1, lat0, lat1 = self.bounds
        return int(round((lat1 - lat0) / self.res))

    @property
    def nlon(self) -> int:
        lon0, lon1, lat0, lat1 = self.bounds
        return int(round((lon1 - lon0) / self.res))

    @property
    def shape(self) -> tuple[int, int]:
        """(nlat, nlon)."""
        return self.nlat, self.nlon

    @property
    def lat(self) -> np.ndarray:
        """Cell-centre latitudes, ascending, degrees north, shape (nlat,)."""
        lat0 = self.bounds[2]
        return lat0 + self.res * (np.arange(self.nlat) + 0.5)

    @property
    def lon(self) -> np.ndarray:
        """Cell-centre longitudes in -180..180, ascending, degrees east, shape (nlon,)."""
        lon0 = self.bounds[0]
        return lon0 + self.res * (np.arange(self.nlon) + 0.5)

    @property
    def lat_bounds(self) -> np.ndarray:
        """Cell edges in latitude, shape (nlat, 2)."""
        return np.stack([self.lat - self.res / 2, self.lat + self.res / 2], axis=-1)

    @property
    def lon_bounds(self) -> np.ndarray:
        """Cell edges in longitude, shape (nlon, 2)."""
        return np.stack([self.lon - self.res / 2, self.lon + self.res / 2], axis=-1)

    def cell_area(self) -> np.ndarray:
        """Area of each cell on the sphere, m², shape (nlat, nlon).

        ``R² Δλ (sin φ₂ − sin φ₁)``; sums to 4πR² on the globe.
        """
        lb = np.deg2rad(self.lat_bounds)
        band = EARTH_RADIUS_M**2 * np.deg2rad(self.res) * (np.sin(lb[:, 1]) - np.sin(lb[:, 0]))
        return np.repeat(band[:, None], self.nlon, axis=1)

    def rows(self, r0: int, r1: int) -> Grid:
        """The sub-grid of latitude rows ``r0 .. r1 - 1`` (a band; same longitudes), for work done band by band."""
        if not 0 <= r0 < r1 <= self.nlat:
            raise GridError(f"rows {r0}..{r1} outside the grid's {self.nlat} latitude rows")
        lon0, lon1, lat0, _ = self.bounds
        return Grid(self.res, (lon0, lon1, lat0 + r0 * self.res, lat0 + r1 * self.res))

    def __str__(self) -> str:
        where = "global" if self.bbox is None else f"bbox={list(self.bounds)}"
        return f"{self.res} deg {where} ({self.nlat}x{self.nlon})"
