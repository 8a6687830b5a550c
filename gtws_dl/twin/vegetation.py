"""Land cover (annual, 9 classes), LAI (monthly, from 1982) and SIF (monthly, from 2001) of the twin.

Land cover is the potential vegetation of the twin's climate (temperature, aridity, precipitation) with
history: cropland expands (~55 % of today's area in 1940, as in HYDE), tropical forest is cleared after 1970,
cities grow. Each cell's fractions describe the whole cell: the sea part of a coastal cell counts as ``water``.
LAI relaxes (1-month lag) towards a class-mix maximum scaled by temperature and soil-water stress; SIF is
absorbed light times a small yield.
"""

from __future__ import annotations

import numpy as np

from gtws_dl.twin.geo import blob
from gtws_dl.twin.hydrology import CLASSES

LAI_MAX = np.array([5.5, 1.5, 2.5, 3.5, 3.0, 0.5, 0.1, 0.0, 0.0])  # m2 m-2 per class
# Regions with intensive agriculture (lat, lon, radius km, boost of cropland potential)
_CROP_BOOST = [(27, 78, 900, 0.6), (36, 115, 700, 0.6), (42, -92, 900, 0.5), (50, 15, 1500, 0.4),
               (-33, -62, 700, 0.4), (48, 35, 900, 0.4), (13, 0, 1500, 0.2), (15, 103, 800, 0.4)]
_DEFOREST = [(-8, -58, 1400, 0.35), (0, 110, 1200, 0.4), (0, 22, 1200, 0.15)]
_WETLANDS = [(62, 70, 900, 0.25), (55, -95, 900, 0.2), (-3, -62, 1200, 0.12), (7, 31, 400, 0.3),
             (-17, -57, 400, 0.3), (0, 20, 800, 0.12), (22, 90, 300, 0.2)]


class LandCover:
    """Annual land-cover fractions (9, nlat, nlon) that sum to 1 in every cell.

    Parameters
    ----------
    lat2d, lon2d : cell-centre coordinates
    land_frac : 0..1
    t_ann, t_warm : annual-mean and warmest-month temperature, deg C
    p_ann : annual precipitation, mm
    aridity : 1 - P/PET, clipped to 0..1
    z : surface height, m
    """

    def __init__(self, lat2d, lon2d, land_frac, t_ann, t_warm, p_ann, aridity, z) -> None:
        self.lf = np.clip(land_frac, 0, 1)
        self.snow = np.clip((1.0 - t_warm) / 3.0, 0, 1)
        self.bare = np.clip((aridity - 0.72) / 0.2, 0, 1) + 0.5 * np.clip((6 - t_warm) / 6, 0, 1)
        self.forest = np.clip((p_ann - 450) / 700, 0, 1) * np.clip((t_warm - 9) / 6, 0, 1)
        self.shrub_share = np.clip((aridity - 0.35) / 0.3, 0, 1)
        boost = sum(c * blob(lat2d, lon2d, a, b, r) for a, b, r, c in _CROP_BOOST)
        moist = np.clip(1 - np.abs(aridity - 0.45) / 0.45, 0, 1)
        self.crop = np.clip(0.35 * np.clip((t_warm - 12) / 8, 0, 1) * moist * (1 + 1.5 * boost), 0, 0.85)
        self.defor = sum(c * blob(lat2d, lon2d, a, b, r) for a, b, r, c in _DEFOREST)
        wl = sum(c * blob(lat2d, lon2d, a, b, r) for a, b, r, c in _WETLANDS)
        self.wetland = np.clip(0.03 * (1 - aridity) + wl * (z < 800), 0, 0.4)
        self.lakes = 0.01 + 0.08 * np.exp(-(((lat2d - 60) / 8) ** 2)) * (1 - aridity)

    def fractions(self, year: int) -> np.ndarray:
        """Fractions for ``year`` in CLASSES order, float32, shape (9, nlat, nlon)."""
        crop_t = 0.55 + 0.45 * min(1.0, max(0.0, (year - 1940) / 75.0))
        defor_t = 1 - np.clip((year - 1970) / 50.0, 0, 1) * self.defor
        urban_t = 0.002 + 0.03 * self.crop * np.exp((min(year, 2024) - 2020) / 35.0)
        rem = np.ones_like(self.lf)
        f = {}
        f["snow_ice"] = self.snow * rem
        rem = rem - f["snow_ice"]
        f["water"] = self.lakes * rem
        f["wetland"] = self.wetland * rem
        rem = rem - f["water"] - f["wetland"]
        f["bare"] = np.clip(self.bare, 0, 1) * rem
        rem = rem - f["bare"]
        f["urban"] = urban_t * rem
        f["cropland"] = self.crop * crop_t * rem
        rem = rem - f["urban"] - f["cropland"]
        f["forest"] = self.forest * defor_t * rem
        rem = np.maximum(rem - f["forest"], 0)
        f["shrubland"] = self.shrub_share * rem
        f["grassland"] = rem - f["shrubland"]
        out = np.stack([f[c] for c in CLASSES]) * self.lf[None]
        out[CLASSES.index("water")] += 1 - self.lf
        return out.astype(np.float32)


class Vegetation:
    """LAI/SIF generator with a one-month memory; call :meth:`month` for consecutive months.

    ``lai_pot`` comes from the land cover; stress from temperature and the true soil water (so LAI carries
    information about soil moisture, as the real satellite record does).
    """

    def __init__(self, shape: tuple[int, int], seed: int) -> None:
        self.lai = np.zeros(shape)
        self.seed = seed

    def month(self, frac: np.ndarray, t_c: np.ndarray, soil_rel: np.ndarray, ssrd: np.ndarray,
              t_year: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One month: returns (LAI m2 m-2, SIF mW m-2 nm-1 sr-1), both float64 (nlat, nlon), no mask."""
        land = np.maximum(1 - frac[8], 1e-6)
        lai_pot = (LAI_MAX[:, None, None] * frac).sum(axis=0) / land
        g_t = np.clip((t_c - 2.0) / 12.0, 0, 1)
        g_w = np.clip(soil_rel / 0.5, 0, 1)
        green = 1 + 0.004 * max(t_year - 1982.0, 0.0)  # CO2 fertilisation / greening
        target = lai_pot * (0.12 + 0.88 * g_t * g_w) * green
        self.lai += 0.5 * (target - self.lai)
        obs = np.maximum(self.lai * (1 + 0.05 * rng.standard_normal(self.lai.shape)), 0)
        fapar = 1 - np.exp(-0.5 * self.lai)
        sif = 0.0045 * ssrd * fapar * np.sqrt(g_w) + 0.03 * rng.standard_normal(self.lai.shape)
        return obs, sif
