"""Generate the whole twin Earth: forcing -> water balance -> truth, ERA5, vegetation, GRACE files.

The run loops over calendar years and, within a year, over months: the fields in memory are one month of the
grid (the year's weather and ERA5-error noise are drawn on the fixed 2.5 deg lattice, put on the grid month by
month; the water balance runs on the land cells). The GRACE stage reads the truth in blocks of months and holds
each centre's mascon array (the GRACE months × the centre's grid). Memory still grows with the domain's area,
by about a month of fields per cell (the twin is not banded in latitude: its GRACE footprint is non-local).
"""

from __future__ import annotations

import calendar
import json
import logging
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from gtws_dl.conventions import BASELINE, CENTRES
from gtws_dl.grid import Grid
from gtws_dl.landmask import land_fraction
from gtws_dl.twin import grace as gr
from gtws_dl.twin import hydrology as hy
from gtws_dl.twin.climate import Climate
from gtws_dl.twin.config import TwinConfig
from gtws_dl.twin.diagnostics import variance_budget
from gtws_dl.twin.geo import Lattice, antarctica_mask, blob, elevation, greenland_mask, mesh
from gtws_dl.twin.vegetation import LandCover, Vegetation
from gtws_dl.twin.writers import Era5Writer, GridFile, MasconWriter, era5_units, write_json

LOGGER = logging.getLogger(__name__)
TWIN_VERSION = "1"
LAI_FROM, SIF_FROM = "1982-01", "2001-01"


def _ice_weight(grid: Grid, lf: np.ndarray, z: np.ndarray, region: Mapping[str, Any]) -> np.ndarray:
    lat, lon = mesh(grid)
    b = blob(lat, lon, float(region["lat"]), float(region["lon"]), float(region["radius_km"]))
    if region["kind"] == "sheet":
        inside = greenland_mask(lat, lon) if region["lat"] > 0 else antarctica_mask(lat, lon)
        # thinning concentrates at the low, fast-flowing margins
        return lf * b * inside * np.clip(1.8 - z / 2000.0, 0.3, 1.8)
    return lf * b * np.clip(z / 1500.0, 0.3, 2.0)


def ice_fields(grid: Grid, lf: np.ndarray, z: np.ndarray, ice: list[dict]) -> list[np.ndarray]:
    """Per region, mm of water per Gt of mass change on ``grid`` (normalised on a global 1 deg grid, so a
    box sees the right share of a region that it only partly covers)."""
    g1 = Grid(1.0)
    lf1 = land_fraction(g1)
    z1 = elevation(g1, lf1)
    a1 = g1.cell_area()
    out = []
    for r in ice:
        norm = float((_ice_weight(g1, lf1, z1, r) * a1).sum())
        out.append(_ice_weight(grid, lf, z, r) * 1e12 / max(norm, 1.0))
    return out


_PASS_SHARE = 1 / 16  # a block of the anomaly pass (months of one float32 field) within this share of memory_gb
_GRACE_BLOCK = 12  # GRACE months per block of the GRACE stage (memory: a year of fields, not the era)


def _smoothed_grace_truth(truth: GridFile, w: np.ndarray, i0: int, grid: Grid, footprint_km: float):
    """Blocks ``(g0, g1, fields)`` of the GRACE-month means of the truth (weights ``w`` (GRACE month, month
    ``i0 + j``)) seen through the Gaussian footprint, ``fields`` (g1 - g0, lat, lon) float64 for GRACE months
    g0..g1; the truth is read one block of months at a time, and no block is kept."""
    for g0 in range(0, w.shape[0], _GRACE_BLOCK):
        g1 = min(w.shape[0], g0 + _GRACE_BLOCK)
        cols = np.flatnonzero(w[g0:g1].any(axis=0))
        a, b = int(cols[0]), int(cols[-1]) + 1
        tr = truth.read("twsa", i0 + a, i0 + b)
        obs = np.tensordot(w[g0:g1, a:b], np.nan_to_num(tr), axes=(1, 0))
        yield g0, g1, gr.smooth(obs, grid, footprint_km)


def _month_days(months: np.ndarray) -> np.ndarray:
    return np.array([calendar.monthrange(int(str(m)[:4]), int(str(m)[5:7]))[1] for m in months], dtype=float)


def twin_config(config: TwinConfig | Mapping | None = None, **overrides: Any) -> TwinConfig:
    """A :class:`TwinConfig` from a config or mapping plus keyword overrides."""
    if isinstance(config, TwinConfig) and not overrides:
        return config
    return TwinConfig.from_mapping(config.to_dict() if isinstance(config, TwinConfig) else config, **overrides)


def complete_twin(out_dir: str | Path, grid: Grid, cfg: TwinConfig) -> dict | None:
    """The manifest of the twin in ``out_dir`` when it is complete and made by this grid and config, else None
    (:func:`generate` would (re)write it)."""
    out = Path(out_dir)
    man_path = out / "twin_manifest.json"
    if not man_path.exists():
        return None
    old = json.loads(man_path.read_text())
    fp = cfg.fingerprint({"grid": [grid.res, grid.bbox], "twin_version": TWIN_VERSION})
    if old.get("fingerprint") == fp and all((out / f).exists() for f in old.get("files", [])):
        return old
    return None


def generate(out_dir: str | Path, grid: Grid | None = None, config: TwinConfig | Mapping | None = None,
             **overrides: Any) -> dict[str, Any]:
    """Generate the twin Earth under ``out_dir`` and return its manifest (also written as JSON).

    Parameters
    ----------
    out_dir : folder (the run's ``paths.twin_dir``)
    grid : twin grid (default: 2 deg global)
    config : TwinConfig or a mapping of its options; ``overrides`` are applied on top
    """
    cfg = twin_config(config, **overrides)
    grid = grid or Grid(2.0)
    out = Path(out_dir)
    man_path = out / "twin_manifest.json"
    fp = cfg.fingerprint({"grid": [grid.res, grid.bbox], "twin_version": TWIN_VERSION})
    old = None if cfg.overwrite else complete_twin(out, grid, cfg)
    if old is not None:
        LOGGER.info("twin Earth already complete in %s (fingerprint %s); skipping", out, fp)
        return old
    t_start = time.perf_counter()
    (out / "era5").mkdir(parents=True, exist_ok=True)
    (out / "grace").mkdir(parents=True, exist_ok=True)
    man_path.unlink(missing_ok=True)  # the manifest marks completeness: remove it while rewriting

    lf = land_fraction(grid).astype(np.float64)
    mask = lf >= 0.5
    cells = np.flatnonzero(mask.ravel())
    times = cfg.months
    months = times.astype("datetime64[M]")
    days = _month_days(months)
    years = np.unique(months.astype("datetime64[Y]").astype(int) + 1970)
    t_dec = (months.astype(int) + 0.5) / 12.0 + 1970.0  # decimal year at mid-month

    clim = Climate(grid, lf, cfg.seed, cfg.weather_noise)
    cm = clim.climatology()
    mdays = np.array([31, 28.25, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[:, None, None]
    p_ann = (cm["tp"] * mdays).sum(0)
    pet_ann = (cm["pev"] * mdays).sum(0)
    aridity = np.clip(1 - p_ann / np.maximum(pet_ann, 1.0), 0, 1)
    t_ann, t_warm = cm["t2m"].mean(0), cm["t2m"].max(0)
    lat2d, lon2d = mesh(grid)
    lc = LandCover(lat2d, lon2d, lf, t_ann, t_warm, p_ann, aridity, clim.z)

    hot_w = [blob(lat2d, lon2d, float(h["lat"]), float(h["lon"]), float(h["radius_km"])) for h in cfg.hotspots]
    ice_w = ice_fields(grid, lf, clim.z, cfg.ice)
    lattice = Lattice(grid)
    rb = np.random.default_rng([cfg.seed, 203])
    bias = lattice.random_fields(rb, 4, 1500.0)
    bias_tp, bias_e, bias_sw, bias_sd = 0.1 * bias[0], 0.1 * bias[1], 0.03 * bias[2], 0.15 * bias[3]

    def params_for(year: int) -> tuple[hy.Params, np.ndarray]:
        fr = lc.fractions(year)  # noqa: F821 - lc is deleted (del below) only after the year loop
        return hy.cell_params(fr.reshape(9, -1)[:, cells], aridity.ravel()[cells], t_ann.ravel()[cells]), fr

    # ---- spin-up: cycle the first year's forcing; groundwater set to its equilibrium half way
    first_months = months[months.astype("datetime64[Y]") == months[0].astype("datetime64[Y]")]
    mos0 = np.array([int(str(m)[5:7]) for m in first_months])
    weather0 = clim.weather(int(years[0]))  # evaluated again for the first year of the run
    f0 = {k: np.stack([f[k].ravel()[cells] for f in clim.months(int(years[0]), mos0, weather0)])
          for k in ("tp", "pev", "t2m")}  # (month, land cell)
    par, _ = params_for(int(years[0]))
    state = hy.new_state(len(cells))
    d0 = days[: len(mos0)]
    for cycle in range(30):
        rech = np.zeros(len(cells))
        for i in range(len(mos0)):
            fl = hy.step(state, par, f0["tp"][i] * d0[i], f0["pev"][i] * d0[i], f0["t2m"][i] - 273.15, d0[i])
            rech += fl["recharge"]
        if cycle == 15:
            k = 1 - np.exp(-1 / par.tau_gw)
            state["gw"] = rech / len(mos0) * (1 - k) / k
    del f0

    # perennial snow (ice sheets, high peaks) starts at the cap: its accumulation leaves as ice flow
    perennial = (t_warm.ravel()[cells] < -1.0)
    state["snow"][perennial] = np.maximum(state["snow"][perennial], hy.SWE_CAP)

    # ---- output files
    nt = len(times)
    truth = GridFile(out / "truth_twsa.nc", grid, times, {
        "twsa": {"units": "mm", "long_name": "terrestrial water storage anomaly (twin truth)",
                 "comment": f"anomaly vs the {BASELINE[0]}..{BASELINE[1]} mean; NaN over the sea"},
        "runoff": {"units": "mm day-1", "long_name": "river outflow generated in the cell (twin truth)"}},
        "gtws_dl twin Earth truth")
    comp = GridFile(out / "truth_components.nc", grid, times, {
        "twsa_forced": {"units": "mm", "long_name": "snow + soil + groundwater + surface water anomaly"},
        "depletion": {"units": "mm", "long_name": "groundwater depletion by pumping (anomaly)"},
        "ice": {"units": "mm", "long_name": "ice-sheet and glacier mass change (anomaly)"}},
        "gtws_dl twin Earth truth components (twsa = twsa_forced + depletion + ice)")
    lai_t = times[months >= np.datetime64(LAI_FROM, "M")]
    sif_t = times[months >= np.datetime64(SIF_FROM, "M")]
    lai_f = GridFile(out / "lai.nc", grid, lai_t, {"LAI": {"units": "m2 m-2", "long_name": "leaf area index"}},
                     "gtws_dl twin Earth LAI (AVHRR-like record from 1982)") if len(lai_t) else None
    sif_f = GridFile(out / "sif.nc", grid, sif_t, {"SIF": {"units": "mW m-2 nm-1 sr-1",
                     "long_name": "solar-induced chlorophyll fluorescence"}},
                     "gtws_dl twin Earth SIF (GOSIF-like record from 2001)") if len(sif_t) else None
    yr_t = np.array([np.datetime64(f"{y}-01-01", "ns") for y in years])
    lc_f = GridFile(out / "landcover.nc", grid, yr_t, {"land_cover_fraction": {"units": "1",
                    "long_name": "fraction of the cell covered by each land-cover class"}},
                    "gtws_dl twin Earth land cover", extra_dim=("class", list(hy.CLASSES)))
    era5t_from = months[-1] - max(cfg.era5t_months, 0) + 1 if cfg.era5t_months > 0 else months[-1] + 1
    era5 = Era5Writer(out / "era5", grid, cfg.era5_layout, cfg.era5_per_year, era5t_from, times)
    veg = Vegetation(grid.shape, cfg.seed)

    base_sel = (months >= np.datetime64(BASELINE[0], "M")) & (months <= np.datetime64(BASELINE[1], "M"))
    acc = {k: np.zeros(grid.shape) for k in ("twsa", "twsa_forced", "depletion", "ice")}
    nan_grid = np.full(grid.shape, np.nan)

    pos = 0
    for year in tqdm(years, desc="twin years", unit="yr", disable=not cfg.progress):
        sel = months.astype("datetime64[Y]").astype(int) + 1970 == year
        mos = np.array([int(str(m)[5:7]) for m in months[sel]])
        n = len(mos)
        weather = weather0 if pos == 0 else clim.weather(int(year))  # the year's noise, on the lattice
        par, frac = params_for(int(year))
        lc_f.write("land_cover_fraction", int(np.searchsorted(years, year)), frac[None])
        smax_grid = nan_grid.copy()
        smax_grid.ravel()[cells] = par.smax
        dd = days[sel]
        tsel = t_dec[sel]
        dep_y = hy.depletion_mm(tsel, [w.ravel()[cells] for w in hot_w], cfg.hotspots)  # (month, land cell)
        ice_y = np.zeros_like(dep_y)
        for w, r in zip(ice_w, cfg.ice, strict=True):
            ice_y += hy.ice_gt(tsel, r)[:, None] * w.ravel()[cells][None]
        rng_v = np.random.default_rng([cfg.seed, 404, int(year)])
        # ERA5 errors: the year's noise drawn on the lattice (one stream per year), put on the grid month by month
        rng_e = np.random.default_rng([cfg.seed, 202, int(year)])
        nz_y = lattice.random_lattice(rng_e, 4 * 12, 500.0).reshape(4, 12, *lattice.shape)
        s_tp = cfg.era5_tp_error_early if year < 1979 else cfg.era5_tp_error
        prelim = months[sel] >= era5t_from
        rev_y = None
        if cfg.era5t_revision > 0 and prelim.any():  # ERA5T differs from the final ERA5 that replaces it
            rng_t = np.random.default_rng([cfg.seed, 505, int(year)])  # own stream: final months unchanged
            rev_y = lattice.random_lattice(rng_t, 2 * 12, 500.0).reshape(2, 12, *lattice.shape)
        glacier = frac[hy.CLASSES.index("snow_ice")] / np.maximum(lf, 1e-6) > 0.5
        in_base = base_sel[sel]
        year_acc = dict.fromkeys(acc)
        # one month of fields at a time: memory is a month of the grid, whatever the record's length
        for i, f in enumerate(clim.months(int(year), mos, weather)):
            before = {k: v.copy() for k, v in state.items()}
            fl = hy.step(state, par, (f["tp"] * dd[i]).ravel()[cells], (f["pev"] * dd[i]).ravel()[cells],
                         (f["t2m"] - 273.15).ravel()[cells], dd[i])
            mean = {k: 0.5 * (before[k] + state[k]) for k in hy.STORES}  # monthly-mean storage
            nat, snow_m, soil_m, et, ro, dep, ice = (nan_grid.copy() for _ in range(7))
            nat.ravel()[cells] = hy.total(mean)
            snow_m.ravel()[cells] = mean["snow"]
            soil_m.ravel()[cells] = mean["soil"]
            et.ravel()[cells] = fl["et"] / dd[i]
            ro.ravel()[cells] = fl["runoff"] / dd[i]
            dep.ravel()[cells] = dep_y[i]
            ice.ravel()[cells] = ice_y[i]
            lai, sif = veg.month(frac, f["t2m"] - 273.15, np.nan_to_num(soil_m / smax_grid),
                                 f["ssrd"], float(tsel[i]), rng_v)
            tws = nat + dep + ice
            if in_base[i]:  # the year's baseline months summed in order, then added (as a sum over months)
                for k, v in (("twsa", tws), ("twsa_forced", nat), ("depletion", dep), ("ice", ice)):
                    year_acc[k] = np.nan_to_num(v) if year_acc[k] is None else year_acc[k] + np.nan_to_num(v)
            at = pos + i
            truth.write("twsa", at, tws[None])
            truth.write("runoff", at, ro[None])
            comp.write("twsa_forced", at, nat[None])
            comp.write("depletion", at, dep[None])
            comp.write("ice", at, ice[None])
            for fobj, name, field, t_from, ft in ((lai_f, "LAI", lai, LAI_FROM, lai_t), (sif_f, "SIF", sif, SIF_FROM, sif_t)):
                if fobj is not None and months[sel][i] >= np.datetime64(t_from, "M"):
                    fobj.write(name, int(np.searchsorted(ft, times[sel][i])), np.where(mask, field, np.nan)[None])

            # ---- ERA5: reanalysis estimates with errors (precipitation worse before satellites, 1979)
            nz = lattice.to_grid(nz_y[:, i])
            tp_e = f["tp"] * np.exp(bias_tp + s_tp * nz[0] - 0.5 * s_tp**2)
            e_land = et * np.exp(bias_e + cfg.era5_e_error * nz[1] - 0.5 * cfg.era5_e_error**2)
            e_mm = np.where(mask, e_land, 0.9 * f["pev"])
            swvl1 = np.clip(0.08 + 0.37 * np.clip(soil_m / smax_grid, 0, 1) ** 0.8 + bias_sw
                            + cfg.swvl1_noise * nz[2], 0.02, 0.5)
            sd_mm = snow_m * np.exp(bias_sd + cfg.sd_error * nz[3] - 0.5 * cfg.sd_error**2)
            sd_mm = np.where(mask & glacier, 10000.0, sd_mm)  # ERA5 puts 10 m w.e. on glaciers
            if rev_y is not None and prelim[i]:
                rev = lattice.to_grid(rev_y[:, i])
                s_r = float(cfg.era5t_revision)
                tp_e = tp_e * np.exp(s_r * rev[0] - 0.5 * s_r**2)
                e_mm = e_mm * np.exp(s_r * rev[1] - 0.5 * s_r**2)
            era5.add_month(times[sel][i], era5_units({**{k: f[k] for k in ("t2m", "d2m", "skt", "sp", "u10", "v10",
                                                                          "ssrd", "strd")},
                                                     "tp": tp_e, "e_mm": e_mm, "pev_mm": f["pev"], "swvl1": swvl1,
                                                     "sd_mm": sd_mm}))
        for k, v in year_acc.items():
            if v is not None:
                acc[k] += v
        pos += n

    era5_files = era5.close()
    # the year loop's fields and the climate generator are not needed again: free them before the GRACE stage
    del f, nat, snow_m, soil_m, et, ro, lai, sif, tws, dep, ice, nz, tp_e, e_land, e_mm, swvl1, sd_mm, weather0
    del clim, cm, lc, veg, state, hot_w, ice_w
    # ---- anomalies vs the 2004-2009 mean (second pass, year slices)
    nb = int(base_sel.sum())
    base = {k: v / nb for k, v in acc.items()}
    pass_bytes = cfg.memory_gb * _PASS_SHARE * 2**30
    step = max(1, min(120, int(pass_bytes // (4 * grid.nlat * grid.nlon))))  # months of one float32 field per block
    for i0 in range(0, nt, step):
        i1 = min(nt, i0 + step)
        truth.write("twsa", i0, truth.read("twsa", i0, i1) - base["twsa"])
        for k in ("twsa_forced", "depletion", "ice"):
            comp.write(k, i0, comp.read(k, i0, i1) - base[k])

    # ---- GRACE
    gm = gr.available_months(cfg.start, cfg.end)
    grace_files: list[Path] = []
    if len(gm):
        a, b = gr.spans(gm)
        need0 = np.datetime64(a.min(), "M")
        need1 = np.datetime64(b.max() - np.timedelta64(1, "D"), "M")
        i0 = int(np.searchsorted(months, max(need0, months[0])))
        i1 = int(np.searchsorted(months, min(need1, months[-1]))) + 1
        w = gr.span_weights(gm, months[i0:i1])
        tmid, tb = gr.time_coords(gm)
        dec = 2002.0 + tmid / 365.25
        in_base = (dec >= 2004.0) & (dec < 2010.0)
        missing = [str(m) for m in np.arange(gm[0], gm[-1] + 1) if m not in set(gm)]
        # one block of GRACE months at a time for every centre (each centre's noise is its own stream, drawn in
        # the same blocks and order), written to its file block by block (the baseline removed at close)
        cgs = {c: gr.centre_grid(grid, float(cfg.grace_res[c])) for c in CENTRES}
        lats = {c: Lattice(cg) for c, cg in cgs.items()}
        rngs = {c: np.random.default_rng([cfg.seed, 303, ci]) for ci, c in enumerate(CENTRES)}
        writers = {c: MasconWriter(out / "grace", c, cgs[c], gm, tmid, tb, missing, in_base,
                                   time_last=(c == "gsfc" and cfg.gsfc_time_last)) for c in CENTRES}
        for g0, g1, sm in _smoothed_grace_truth(truth, w, i0, grid, cfg.footprint_km):
            for c in CENTRES:
                noise = lats[c].random_fields(rngs[c], g1 - g0, cfg.grace_noise_km) * float(cfg.grace_noise_mm[c])
                writers[c].write(g0, (gr.block_mean(sm, grid, cgs[c]) + noise) / 10.0)
        del sm, noise
        grace_files += [writers[c].close() for c in CENTRES]
    paths = [truth.close(), comp.close(), lc_f.close()]
    paths += [x.close() for x in (lai_f, sif_f) if x is not None]
    elapsed = time.perf_counter() - t_start


    diag = variance_budget(out, grid=grid, memory_mb=cfg.memory_gb * 512.0)
    files = sorted(str(p.relative_to(out)) for p in [*paths, *era5_files, *grace_files])
    manifest = {
        "twin_version": TWIN_VERSION,
        "fingerprint": fp,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seed": cfg.seed,
        "config": cfg.to_dict(),
        "grid": {"res": grid.res, "bbox": grid.bbox, "nlat": grid.nlat, "nlon": grid.nlon},
        "period": {"start": cfg.start, "end": cfg.end, "months": nt, "baseline": list(BASELINE)},
        "files": files,
        "variables": {
            "era5": {"instantaneous": list(("t2m", "d2m", "skt", "sp", "u10", "v10", "swvl1", "sd")),
                     "accumulated": ["tp", "e", "pev", "ssrd", "strd"], "layout": cfg.era5_layout,
                     "era5t_from": str(era5t_from)},
            "truth_twsa.nc": {"twsa": "mm", "runoff": "mm day-1"},
            "truth_components.nc": {"twsa_forced": "mm", "depletion": "mm", "ice": "mm"},
            "lai.nc": {"LAI": "m2 m-2", "from": LAI_FROM}, "sif.nc": {"SIF": "mW m-2 nm-1 sr-1", "from": SIF_FROM},
            "landcover.nc": {"land_cover_fraction": list(hy.CLASSES)},
            "grace": {c: f"{cfg.grace_res[c]} deg native, noise {cfg.grace_noise_mm[c]} mm" for c in CENTRES},
        },
        "simulates": {
            "forced_stores": "snow, soil (bucket), groundwater (linear reservoir), surface water; driven by the forcing",
            "unexplained": {"groundwater_depletion": [h["name"] for h in cfg.hotspots],
                            "land_ice": [r["name"] for r in cfg.ice]},
            "era5_errors": "tp, e multiplicative (tp worse before 1979); swvl1, sd from model stores with bias+noise",
            "grace": f"Gaussian footprint {cfg.footprint_km} km HWHM, correlated noise, real month list",
        },
        "diagnostics": diag,
        "generation_seconds": round(elapsed, 1),
    }
    write_json(man_path, manifest)
    LOGGER.info("twin Earth written to %s in %.1f s: %d files (%s)", out, elapsed, len(files), ", ".join(files[:6]))
    return manifest
