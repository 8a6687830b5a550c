"""External estimates of the twin's unforced storage, with errors of the size real ones have, for
``products.unforced=external``: ``python tools/twin_external_estimates.py TWIN_DIR OUT_DIR [--seed 0]``.

Writes ``OUT_DIR/ice_sheets_gt.csv`` (``time, greenland, antarctica``: annual cumulative mass anomaly, Gt, like
IMBIE's series) and ``OUT_DIR/unforced_storage.nc`` (``unforced_storage`` (time, lat, lon) mm, annual means on a
grid three times as coarse as the twin's: groundwater depletion + glaciers outside the ice sheets, like a pumping
inventory plus a glacier mass-balance product). Each is the twin's truth (``truth_components.nc``: ``depletion`` +
``ice``) times a factor drawn once per series, 1 + N(0, 0.15) for the ice sheets (IMBIE's ±10–20 % on rates)
and 1 + N(0, 0.3) for the field (pumping inventories disagree by tens of percent), printed. Reads the truth a year
at a time.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import xarray as xr

from gtws_dl.grid import Grid
from gtws_dl.io.regrid import regrid_conservative
from gtws_dl.landmask import land_mask
from gtws_dl.post.regions import region_masks

SHEETS = ("greenland", "antarctica")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("twin_dir", type=Path)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    f_sheet = {s: 1 + 0.15 * rng.standard_normal() for s in SHEETS}
    f_field = 1 + 0.3 * rng.standard_normal()
    print("error factors:", {k: round(v, 3) for k, v in f_sheet.items()}, "field", round(f_field, 3))
    with netCDF4.Dataset(a.twin_dir / "truth_components.nc") as nc:
        lat, lon = nc["lat"][:].data.astype(float), nc["lon"][:].data.astype(float)
        times = pd.DatetimeIndex(netCDF4.num2date(nc["time"][:], nc["time"].units,
                                                  only_use_cftime_datetimes=False, only_use_python_datetimes=True))
        res = float(np.round(lat[1] - lat[0], 6))
        grid = Grid(res, None if lat.size * res >= 180 - 1e-6 and lon.size * res >= 360 - 1e-6 else
                    (lon[0] - res / 2, lon[-1] + res / 2, lat[0] - res / 2, lat[-1] + res / 2))
        land = land_mask(grid)
        masks = region_masks(grid, land)
        sheet = masks["greenland"] | masks["antarctica"]
        area = grid.cell_area()
        coarse = Grid(3 * res, grid.bbox)
        years, rows, fields = sorted(set(times.year)), [], []
        for y in years:
            idx = np.flatnonzero(times.year == y)
            ice = np.asarray(nc["ice"][idx[0]:idx[-1] + 1], np.float64).mean(0)
            dep = np.asarray(nc["depletion"][idx[0]:idx[-1] + 1], np.float64).mean(0)
            rows.append({"time": f"{y}-07", **{s: f_sheet[s] * float(np.nansum((ice * area)[masks[s]])) / 1e12
                                                for s in SHEETS}})
            other = np.where(land & ~sheet, np.nan_to_num(dep) + np.nan_to_num(ice), np.nan) * f_field
            fields.append(regrid_conservative(xr.DataArray(other, {"lat": lat, "lon": lon}, ("lat", "lon")),
                                              coarse).values)
    a.out_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(a.out_dir / "ice_sheets_gt.csv", index=False, float_format="%.3f")
    stamps = pd.to_datetime([f"{y}-07-01" for y in years])
    xr.Dataset({"unforced_storage": (("time", "lat", "lon"), np.stack(fields).astype(np.float32),
                                     {"units": "mm", "long_name": "groundwater depletion + glacier storage (estimate)"})},
               coords={"time": stamps, "lat": coarse.lat, "lon": coarse.lon}).to_netcdf(a.out_dir / "unforced_storage.nc")
    print("wrote", a.out_dir / "ice_sheets_gt.csv", "and", a.out_dir / "unforced_storage.nc")


if __name__ == "__main__":
    main()
