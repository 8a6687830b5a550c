"""Meteorological forcing of the twin Earth on cell centres, one year at a time.

Fields (float32, shape (months, nlat, nlon)), true values before any ERA5 error:
``t2m``, ``d2m``, ``skt`` K; ``sp`` Pa; ``u10``, ``v10`` m s-1; ``tp``, ``pev`` mm day-1 (pev > 0 here,
potential evaporation); ``ssrd``, ``strd`` W m-2.

Ingredients: a latitude/continentality seasonal cycle (hemispheres opposite), an ITCZ that follows the sun with
monsoon excursions, subtropical deserts and mid-latitude storm tracks; an ENSO-like AR(2) index (quasi-period
~4 yr) with teleconnection patterns; two decadal AR(1) modes; a warming trend accelerating after 1970 with polar
amplification; spatially correlated weather noise (AR(1) in time). Dewpoint from a relative humidity tied to
precipitation (Magnus), radiation from top-of-atmosphere insolation and cloudiness, potential evaporation from
Priestley-Taylor plus a vapour-pressure-deficit term, surface pressure hypsometric from the synthetic orography.
"""

from __future__ import annotations

import numpy as np

from gtws_dl.grid import Grid
from gtws_dl.twin.geo import Lattice, blob, coarse_continentality, elevation, mesh

SIGMA_SB = 5.670374e-8  # Stefan-Boltzmann, W m-2 K-4
T0 = 273.15
MET_VARS = ("t2m", "d2m", "skt", "sp", "u10", "v10", "tp", "pev", "ssrd", "strd")
_MID_DOY = np.array([15.5, 45.0, 74.5, 105.0, 135.5, 166.0, 196.5, 227.5, 258.0, 288.5, 319.0, 349.5])
_EPOCH0, _EPOCH1 = 1850, 2101  # index series are drawn on this fixed span, then sliced (window independent)

# (lat, lon, radius km, d ln P per unit ENSO index): El Nino dries the maritime continent, Amazon, southern
# Africa, India; wets coastal Ecuador/Peru, the southern US, SE South America and East Africa.
_ENSO_P = [(-5, 120, 1800, -0.25), (-3, -60, 1500, -0.18), (-7, -40, 700, -0.2), (-22, 28, 1000, -0.15),
           (22, 78, 1000, -0.1), (12, -85, 700, -0.15), (-3, -80, 500, 0.5), (31, -95, 1000, 0.12),
           (-30, -57, 800, 0.2), (0, 38, 800, 0.2), (0, -160, 2500, 0.6), (-25, 140, 1200, -0.15)]
_ENSO_T = [(58, -120, 1500, 0.6), (30, -85, 800, -0.3), (-20, 135, 1500, 0.3), (-22, 28, 1000, 0.3)]
# AMO-like decadal mode: Sahel and India wetter, NE Brazil drier, Europe/N America warmer in the + phase.
_AMO_P = [(14, 0, 1200, 0.3), (20, 78, 1000, 0.1), (-7, -40, 800, -0.2), (38, -95, 1200, -0.1)]
_AMO_T = [(50, 10, 2000, 0.3), (45, -90, 2000, 0.2)]
_DESERTS = [(23, 10, 1500), (23, 47, 900), (-25, 128, 700), (-23, -70, 400), (-24, 18, 500), (41, 90, 900),
            (33, -113, 500), (27, 70, 350), (38, 60, 600)]


def _ar2(rng: np.random.Generator, n: int, period: float, damp: float) -> np.ndarray:
    a1, a2 = 2 * damp * np.cos(2 * np.pi / period), -(damp**2)
    e = rng.standard_normal(n + 240)
    x = np.zeros(n + 240)
    for t in range(2, n + 240):
        x[t] = a1 * x[t - 1] + a2 * x[t - 2] + e[t]
    x = x[240:]
    return x / x.std()


def _ar1(rng: np.random.Generator, n: int, tau_months: float) -> np.ndarray:
    rho = np.exp(-1.0 / tau_months)
    e = rng.standard_normal(n) * np.sqrt(1 - rho**2)
    x = np.zeros(n)
    for t in range(1, n):
        x[t] = rho * x[t - 1] + e[t]
    return x / x.std()


def warming(t_years: np.ndarray) -> np.ndarray:
    """Global-mean land warming (K) vs 1940: slow before 1970, accelerating after (about +1.5 K by 2024)."""
    t = np.asarray(t_years, dtype=float)
    return 0.003 * (t - 1940) + 0.016 * np.maximum(0, t - 1970) + 0.00015 * np.maximum(0, t - 1970) ** 2


def toa_insolation(lat: np.ndarray, doy: float) -> np.ndarray:
    """Daily-mean top-of-atmosphere insolation (W m-2) at latitude ``lat`` (deg) on day ``doy``."""
    decl = np.deg2rad(23.44) * np.sin(2 * np.pi * (doy - 81) / 365.0)
    phi = np.deg2rad(lat)
    x = np.clip(-np.tan(phi) * np.tan(decl), -1, 1)
    h0 = np.arccos(x)
    dr = 1 + 0.033 * np.cos(2 * np.pi * doy / 365.0)
    return 1361.0 / np.pi * dr * (h0 * np.sin(phi) * np.sin(decl) + np.cos(phi) * np.cos(decl) * np.sin(h0))


class Climate:
    """Forcing generator for one grid and seed; call :meth:`weather` (or :meth:`year`) for consecutive years.

    Parameters
    ----------
    grid : Grid
    land_frac : (nlat, nlon) array, 0..1
    seed : int
    noise : float
        Scale of the weather noise (1 = realistic).
    """

    def __init__(self, grid: Grid, land_frac: np.ndarray, seed: int, noise: float = 1.0) -> None:
        self.grid, self.seed, self.noise = grid, int(seed), float(noise)
        self.lat, self.lon = mesh(grid)
        self.alat = np.abs(self.lat)
        self.lf = land_frac.astype(np.float64)
        self.z = elevation(grid, land_frac).astype(np.float64)
        self.cont = coarse_continentality(grid)
        self.hemi = np.tanh(self.lat / 8.0)
        self.lattice = Lattice(grid)
        rng = np.random.default_rng([self.seed, 7001])
        n = (_EPOCH1 - _EPOCH0) * 12
        self.enso = _ar2(rng, n, period=50.0, damp=0.975)
        self.pdo = _ar1(rng, n, tau_months=60.0)
        self.amo = _ar1(rng, n, tau_months=240.0)
        rp = np.random.default_rng([self.seed, 7002])
        self.pdo_p = 0.12 * self.lattice.random_fields(rp, 1, 2500.0)[0]
        self.pdo_t = 0.3 * self.lattice.random_fields(rp, 1, 3000.0)[0]
        self.enso_p = self._pattern(_ENSO_P)
        self.enso_t = self._pattern(_ENSO_T) + 0.25 * np.exp(-((self.lat / 20.0) ** 2))
        self.amo_p, self.amo_t = self._pattern(_AMO_P), self._pattern(_AMO_T)
        self.desert = np.max([blob(self.lat, self.lon, a, b, r) for a, b, r in _DESERTS], axis=0)
        self.t_amp = (0.8 + 20.0 * (self.alat / 90) ** 1.2 * (0.35 + 0.95 * self.cont)).astype(np.float64)
        self.t_ann = 29.0 - 48.0 * (self.alat / 90) ** 1.6 - 0.0065 * self.z
        self.warm_amp = (1 + np.where(self.lat > 0, 1.8, 0.5) * (self.alat / 90) ** 2) * (0.7 + 0.5 * self.cont)
        self._state: dict[str, np.ndarray] | None = None

    def _pattern(self, items: list[tuple[float, float, float, float]]) -> np.ndarray:
        out = np.zeros(self.grid.shape)
        for la, lo, r, c in items:
            out += c * blob(self.lat, self.lon, la, lo, r)
        return out

    # ------------------------------------------------------------------ climatology pieces
    def _seasonal_t(self, doy: float) -> np.ndarray:
        return self.t_ann + self.t_amp * self.hemi * np.cos(2 * np.pi * (doy - 200.0) / 365.0)

    def _precip_clim(self, doy: float, t_c: np.ndarray) -> np.ndarray:
        """Precipitation climatology (mm/day) for day ``doy`` given temperature ``t_c`` (deg C)."""
        s = np.cos(2 * np.pi * (doy - 200.0) / 365.0)  # +1 in July
        lon = self.lon

        def g(c: float, w: float) -> np.ndarray:
            return np.exp(-((((lon - c + 180) % 360) - 180) / w) ** 2)

        if s >= 0:
            m = 6 + 16 * g(85, 25) + 6 * g(0, 20) + 8 * g(-100, 15)
        else:
            m = 10 + 9 * g(135, 20) + 6 * g(-55, 20) + 6 * g(25, 15)
        itcz_lat = 4.0 + m * s
        p_itcz = 10.0 * np.exp(-(((self.lat - itcz_lat) / 9.0) ** 2))
        winter = -self.hemi * np.cos(2 * np.pi * (doy - 200.0) / 365.0)
        p_st = 2.8 * np.exp(-(((self.alat - 47) / 13.0) ** 2)) * (1 + 0.25 * winter) * (1.25 - 0.75 * self.cont)
        p0 = 0.8 * (1.2 - 0.6 * self.cont)
        dry = 0.85 * np.exp(-(((self.alat - 25) / 9.0) ** 2)) * (0.45 + 0.55 * self.cont)
        p = p_itcz * (1 - 0.5 * dry) + (p_st + p0) * (1 - dry)
        p *= 1 - 0.75 * self.desert
        p *= np.clip(np.exp(0.045 * (t_c - 10.0)), 0.08, 1.0)
        p *= (1 + 0.25 * np.minimum(self.z, 2500) / 1000) * np.exp(-np.maximum(self.z - 3000, 0) / 1500)
        return np.maximum(p, 0.02)

    def climatology(self) -> dict[str, np.ndarray]:
        """Noise- and trend-free mean year: ``t2m`` (deg C), ``tp`` and ``pev`` (mm/day), shape (12, nlat, nlon)."""
        t = np.stack([self._seasonal_t(d) for d in _MID_DOY])
        p = np.stack([self._precip_clim(d, t[i]) for i, d in enumerate(_MID_DOY)])
        pev = np.stack([self._derived(t[i], p[i], d, np.zeros(self.grid.shape))["pev"] for i, d in enumerate(_MID_DOY)])
        return {"t2m": t, "tp": p, "pev": pev}

    def _derived(self, t_c: np.ndarray, p: np.ndarray, doy: float, n_rad: np.ndarray) -> dict[str, np.ndarray]:
        cloud = 1 - np.exp(-p / 3.5)
        q = toa_insolation(self.lat, doy)
        ssrd = np.maximum(q * (0.76 - 0.42 * cloud) * (1 + 0.08 * self.z / 1000) * (1 + 0.06 * n_rad), 0.0)
        rh = np.clip(0.35 + 0.5 * (1 - np.exp(-p / 1.5)) + 0.12 * (1 - self.cont), 0.12, 0.97)
        tk = t_c + T0
        gam = np.log(rh) + 17.62 * t_c / (243.12 + t_c)
        td = 243.12 * gam / (17.62 - gam)
        strd = (0.55 + 0.3 * rh + 0.15 * cloud) * SIGMA_SB * tk**4
        skt = t_c + (ssrd - 150.0) / 60.0 * (1.3 - rh) - 0.5
        skt = np.where(t_c < 0, np.minimum(skt, t_c + 0.5), skt)
        es = 0.6108 * np.exp(17.27 * t_c / (t_c + 237.3))  # kPa
        ea = 0.6108 * np.exp(17.27 * td / (td + 237.3))
        delta = 4098 * es / (t_c + 237.3) ** 2
        albedo = np.where(t_c < -2, 0.6, 0.2)
        rn = (1 - albedo) * ssrd + strd - 0.97 * SIGMA_SB * (skt + T0) ** 4
        pt = 1.26 * delta / (delta + 0.066) * np.maximum(rn, 0) * 86400 / 2.45e6
        pev = pt + 0.25 * np.maximum(es - ea, 0) * 10 * 0.4  # VPD (kPa) term, ~1-3 mm/day in deserts
        return {"ssrd": ssrd, "strd": strd, "d2m": td + T0, "skt": skt + T0, "pev": pev}

    # ------------------------------------------------------------------ one year
    def weather(self, year: int) -> dict[str, np.ndarray]:
        """The year's AR(1)-in-time smooth weather noise on the lattice, unit variance, (12, nlat_l, nlon_l) per
        ingredient; drawn per (seed, year), state carried across years: call once per year, in order."""
        rng = np.random.default_rng([self.seed, 101, year])
        lat = self.lattice
        spec = {"t": (1500.0, 0.4), "sp": (1500.0, 0.5), "p": (800.0, 0.2), "u": (1000.0, 0.2),
                "v": (1000.0, 0.2), "rad": (800.0, 0.2)}
        white = {k: rng.standard_normal((12, *lat.shape)) for k in spec}
        if self._state is None:
            rng0 = np.random.default_rng([self.seed, 100, year])
            self._state = {k: lat.smooth(rng0.standard_normal((1, *lat.shape)), s)[0] for k, (s, _) in spec.items()}
        out = {}
        for k, (scale, rho) in spec.items():
            sm = lat.smooth(white[k], scale)
            prev = self._state[k]
            seq = np.empty_like(sm)
            for m in range(12):
                prev = rho * prev + np.sqrt(1 - rho**2) * sm[m]
                seq[m] = prev
            self._state[k] = prev
            out[k] = seq
        return out

    def year(self, year: int, months: np.ndarray) -> dict[str, np.ndarray]:
        """Forcing for calendar ``year``, months ``months`` (1..12, consecutive from January or the start).

        Returns a dict of float32 arrays (len(months), nlat, nlon) in the units of the module docstring,
        plus the indices ``enso`` and ``warming`` (shape (len(months),)). Holds the whole year: the twin's
        run uses :meth:`months` (one month of fields at a time)."""
        out: dict[str, list] = {}
        for fields in self.months(year, months, self.weather(year)):
            for k, v in fields.items():
                out.setdefault(k, []).append(v)
        return {**{k: np.stack(out[k]) for k in MET_VARS}, "enso": np.array(out["enso"]),
                "warming": np.array(out["warming"])}

    def months(self, year: int, months: np.ndarray, noise: dict[str, np.ndarray]):
        """Yield the forcing of each month of ``months`` (1..12) of ``year``: float32 (nlat, nlon) fields in the
        units of the module docstring, and the scalars ``enso`` and ``warming``. ``noise``: the year's
        :meth:`weather` (the same noise gives the same fields: a year can be evaluated twice)."""
        ns = self.noise
        for mo in np.asarray(months):
            i = mo - 1
            nz = {k: self.lattice.to_grid(v[i]) for k, v in noise.items()}
            k = (year - _EPOCH0) * 12 + i
            doy = _MID_DOY[i]
            tyear = year + (i + 0.5) / 12
            lock = 1 + 0.35 * np.cos(2 * np.pi * (doy - 350) / 365.0)
            enso = self.enso[k] * lock
            dw = warming(np.array(tyear))
            sd_t = (0.4 + 2.2 * self.alat / 90) * (0.6 + 0.6 * self.cont)
            t_c = (self._seasonal_t(doy) + dw * self.warm_amp + self.enso_t * enso + self.pdo_t * self.pdo[k]
                   + self.amo_t * self.amo[k] + ns * sd_t * nz["t"])
            sig_p = 0.3 * ns
            lnp = (sig_p * nz["p"] - 0.5 * sig_p**2 + self.enso_p * enso + self.pdo_p * self.pdo[k]
                   + self.amo_p * self.amo[k] + 0.02 * dw * self.warm_amp)
            p = self._precip_clim(doy, t_c) * np.exp(lnp)
            d = self._derived(t_c, p, doy, ns * nz["rad"] - 0.5 * ns * nz["p"])
            winter = -self.hemi * np.cos(2 * np.pi * (doy - 200.0) / 365.0)
            p_sl = (101325 + 700 * np.exp(-(((self.alat - 32) / 10) ** 2))
                    - 1200 * np.exp(-(((self.alat - 62) / 8) ** 2)) * np.where(self.lat > 0, 0.6, 1.0)
                    + 800 * self.cont * winter * self.lf + 400 * ns * nz["sp"] * (0.3 + self.alat / 90))
            sp = p_sl * np.exp(-self.z / (29.3 * (t_c + T0 + 0.0065 * self.z / 2)))
            rough = 1 - 0.45 * self.lf
            u = (-5 * np.exp(-(((self.alat - 14) / 9) ** 2)) + 7 * np.where(self.lat < 0, 1.4, 1.0)
                 * np.exp(-(((self.alat - 48) / 11) ** 2)) - 3 * np.exp(-(((self.alat - 75) / 8) ** 2)))
            s = np.cos(2 * np.pi * (doy - 200.0) / 365.0)
            itcz = 4.0 + 8 * s
            v = -3 * np.tanh((self.lat - itcz) / 8) * np.exp(-(((self.lat - itcz) / 20) ** 2))
            out = {"t2m": t_c + T0, "tp": p, "u10": rough * (u + 1.5 * ns * nz["u"]),
                   "v10": rough * (v + 1.5 * ns * nz["v"]), "sp": sp, **{key: d[key] for key in
                   ("d2m", "skt", "pev", "ssrd", "strd")}}
            yield {**{k2: np.asarray(v2).astype(np.float32) for k2, v2 in out.items()}, "enso": enso,
                   "warming": float(dw)}
