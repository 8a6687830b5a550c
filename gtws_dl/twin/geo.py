"""Geography of the twin: great-circle blobs, a synthetic orography and smooth random fields.

Everything is evaluated analytically at cell centres (or on a fixed coarse lattice and interpolated),
so the same seed gives the same large-scale world on a 2 deg globe and on a 0.25 deg box.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from gtws_dl.grid import EARTH_RADIUS_M, Grid
from gtws_dl.landmask import land_fraction

R_KM = EARTH_RADIUS_M / 1000.0
_LATTICE_RES = 2.5  # deg; smooth noise lives on this fixed global lattice (>= 600 km scales only)


def great_circle_km(lat: np.ndarray, lon: np.ndarray, lat0: float, lon0: float) -> np.ndarray:
    """Haversine distance (km) from (lat0, lon0) to broadcast (lat, lon) in degrees."""
    p1, p2 = np.deg2rad(lat), np.deg2rad(lat0)
    dl = np.deg2rad(lon - lon0)
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * R_KM * np.arcsin(np.sqrt(np.clip(a, 0, 1)))


def blob(lat2d: np.ndarray, lon2d: np.ndarray, lat0: float, lon0: float, radius_km: float) -> np.ndarray:
    """Gaussian bump exp(-d^2 / r^2) on the sphere, d great-circle distance."""
    d = great_circle_km(lat2d, lon2d, lat0, lon0)
    return np.exp(-((d / radius_km) ** 2))


def mesh(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """(lat2d, lon2d) of cell centres, shape grid.shape."""
    lon2d, lat2d = np.meshgrid(grid.lon, grid.lat)
    return lat2d, lon2d


# (lat, lon, height m, radius km) — the world's main high terrain, as overlapping bumps.
_MOUNTAINS = [
    (33.0, 86.0, 4800, 900), (29.0, 96.0, 3500, 500), (36.0, 75.0, 3500, 500), (47.0, 98.0, 1500, 900),
    (40.0, -109.0, 2000, 700), (50.0, -118.0, 1500, 500), (60.0, -140.0, 1200, 500), (19.0, -101.0, 1800, 450),
    (-17.0, -68.0, 3800, 500), (-30.0, -69.5, 3000, 400), (-42.0, -71.5, 1300, 350), (3.0, -75.0, 2200, 450),
    (-5.0, -78.5, 2500, 350), (46.0, 9.0, 1500, 300), (39.0, 35.0, 1200, 500), (33.0, 54.0, 1400, 700),
    (9.0, 39.0, 2000, 500), (-2.0, 36.0, 1400, 600), (-25.0, 27.0, 1200, 800), (-15.0, -47.0, 800, 700),
    (18.0, 77.0, 600, 500), (62.0, 10.0, 800, 350), (-35.0, 148.0, 700, 350), (43.0, 44.0, 1500, 250),
    (72.0, -40.0, 2800, 700), (-82.0, 75.0, 3200, 1800), (-80.0, -100.0, 1500, 900),
]


def elevation(grid: Grid, land_frac: np.ndarray) -> np.ndarray:
    """Synthetic surface height (m), float32: mountain bumps over land, 0 over the sea."""
    lat2d, lon2d = mesh(grid)
    z = np.zeros(grid.shape)
    for la, lo, h, r in _MOUNTAINS:
        z = np.maximum(z, h * blob(lat2d, lon2d, la, lo, r))
    z += 150.0  # mean lowland height
    return (z * np.clip(land_frac, 0, 1)).astype(np.float32)


class Lattice:
    """Fixed 2.5 deg global lattice with bilinear interpolation to a grid's cell centres.

    Random fields are drawn on the lattice, smoothed with a Gaussian of ``scale_km`` (in km: the
    longitude sigma widens with 1/cos(lat)), normalised to unit variance, then interpolated.
    """

    def __init__(self, grid: Grid) -> None:
        self.lat = np.arange(-90.0, 90.0 + 1e-9, _LATTICE_RES)
        self.lon = np.arange(-180.0, 180.0, _LATTICE_RES)
        fi = (grid.lat - self.lat[0]) / _LATTICE_RES
        self.i0 = np.clip(np.floor(fi).astype(int), 0, len(self.lat) - 2)
        self.wi = (fi - self.i0)[:, None]
        fj = (grid.lon - self.lon[0]) / _LATTICE_RES
        self.j0 = np.floor(fj).astype(int) % len(self.lon)
        self.j1 = (self.j0 + 1) % len(self.lon)
        self.wj = (fj - np.floor(fj))[None, :]

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.lat), len(self.lon)

    def smooth(self, white: np.ndarray, scale_km: float) -> np.ndarray:
        """Smooth (..., nlat_l, nlon_l) white noise to unit-variance fields of correlation ``scale_km``."""
        deg_km = np.pi * R_KM / 180.0
        s_lat = scale_km / (deg_km * _LATTICE_RES)
        out = gaussian_filter1d(white, s_lat, axis=-2, mode="reflect")
        coslat = np.maximum(np.cos(np.deg2rad(self.lat)), 0.05)
        for i, c in enumerate(coslat):
            s_lon = min(s_lat / c, 3.0 * len(self.lon))
            out[..., i, :] = gaussian_filter1d(out[..., i, :], s_lon, axis=-1, mode="wrap")
        sd = out.std(axis=(-2, -1), keepdims=True)
        return out / np.where(sd > 0, sd, 1.0)

    def to_grid(self, field: np.ndarray) -> np.ndarray:
        """Bilinear interpolation of (..., nlat_l, nlon_l) to (..., nlat, nlon)."""
        a = field[..., self.i0, :]
        b = field[..., self.i0 + 1, :]
        rows = a * (1 - self.wi) + b * self.wi
        return rows[..., self.j0] * (1 - self.wj) + rows[..., self.j1] * self.wj

    def random_lattice(self, rng: np.random.Generator, n: int, scale_km: float) -> np.ndarray:
        """``n`` smooth unit-variance random fields on the lattice, shape (n, nlat_l, nlon_l), float64: a grid's
        fields are ``to_grid`` of them, field by field (a month at a time needs one field on the grid)."""
        return self.smooth(rng.standard_normal((n, *self.shape)), scale_km)

    def random_fields(self, rng: np.random.Generator, n: int, scale_km: float) -> np.ndarray:
        """``n`` smooth unit-variance random fields on the grid, shape (n, nlat, nlon), float64."""
        return self.to_grid(self.random_lattice(rng, n, scale_km))


def smooth_land(land_frac: np.ndarray, grid: Grid, scale_km: float) -> np.ndarray:
    """Land fraction smoothed over ``scale_km`` (continentality, 0..1), shape grid.shape."""
    deg_km = np.pi * R_KM / 180.0
    s_lat = scale_km / (deg_km * grid.res)
    wrap = grid.bbox is None or grid.nlon * grid.res >= 360 - 1e-6
    out = gaussian_filter1d(land_frac.astype(np.float64), s_lat, axis=0, mode="nearest")
    coslat = np.maximum(np.cos(np.deg2rad(grid.lat)), 0.05)
    for i, c in enumerate(coslat):
        out[i] = gaussian_filter1d(out[i], min(s_lat / c, 3 * grid.nlon), mode="wrap" if wrap else "nearest")
    return np.clip(out, 0, 1)


def coarse_continentality(grid: Grid, scale_km: float = 800.0) -> np.ndarray:
    """Continentality (0 = open sea, 1 = deep interior), resolution independent, shape grid.shape.

    The land fraction of a fixed 2.5 deg global grid is smoothed over ``scale_km`` and interpolated
    bilinearly to ``grid``'s cell centres, so a 0.25 deg box sees the same interior as the 2 deg globe.
    """
    g = Grid(2.5)
    sm = smooth_land(land_fraction(g), g, scale_km)
    fi = np.clip((grid.lat - g.lat[0]) / g.res, 0, g.nlat - 1 - 1e-9)
    i0 = np.floor(fi).astype(int)
    wi = (fi - i0)[:, None]
    i1 = np.minimum(i0 + 1, g.nlat - 1)
    fj = (grid.lon - g.lon[0]) / g.res
    j0 = np.floor(fj).astype(int)
    wj = (fj - j0)[None, :]
    j0m, j1m = j0 % g.nlon, (j0 + 1) % g.nlon
    rows = sm[i0] * (1 - wi) + sm[i1] * wi
    return rows[:, j0m] * (1 - wj) + rows[:, j1m] * wj


def greenland_mask(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Rough Greenland polygon (excludes Ellesmere, Baffin, Iceland, Svalbard)."""
    west = np.where(lat < 74, -62.0, np.where(lat < 76, -74.0, -75.0 + (lat - 76) * 2.5))
    return (lat >= 59.5) & (lon > west) & (lon < -10) & ~((lat < 67) & (lon > -30))


def antarctica_mask(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    return lat < -60
