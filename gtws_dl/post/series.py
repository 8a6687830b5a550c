"""Regional TWSA series (area-weighted mean in mm, mass in Gt) and their Excel workbook.

For region R with weights ``w = cell_area`` (× ``land_fraction`` if given), at month t::

    mean_mm(t) = Σ_{i∈R, finite} w_i x_i(t) / Σ_{i∈R, finite} w_i        (mean over valid cells)
    mass_Gt(t) = mean_mm(t) · Σ_{i∈R} w_i · 1e-12                         (full region area)

1 mm of water over 1 m² is 1 kg, so mm·m² = kg and Gt = kg·1e-12. The mass scales the mean over
valid cells by the *full* region area: cells that are NaN in a month are assumed to carry the
regional mean anomaly rather than zero. A month with no valid cell is NaN.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from gtws_dl.seasonal import month_starts

LOGGER = logging.getLogger(__name__)
KG_PER_GT = 1e12


BAND_BYTES = 64 * 2**20  # float64 months x rows x lon of one band of a banded field


def regional_series(
    twsa: xr.DataArray | np.ndarray,
    cell_area: np.ndarray,
    masks: Mapping[str, np.ndarray],
    *,
    land_fraction: np.ndarray | None = None,
    times: Sequence | np.ndarray | None = None,
    chunk: int = 120,
) -> pd.DataFrame:
    """Area-weighted regional means (mm) and masses (Gt) per month.

    Parameters
    ----------
    twsa : DataArray (time, lat, lon) or ndarray (time, nlat, nlon), or a field read by latitude bands
        (``band(r0, r1)`` -> (time, r1 - r0, nlon), ``shape``): TWSA in mm water equivalent; NaN = no value.
    cell_area : ndarray (nlat, nlon)
        Cell areas in m² (:meth:`gtws_dl.grid.Grid.cell_area`).
    masks : {name: bool ndarray (nlat, nlon)}
    land_fraction : ndarray (nlat, nlon), optional
        Multiplies the weights (land area instead of cell area).
    times : (time,) datetimes, optional
        Needed when ``twsa`` is a plain array; a DataArray uses its ``time`` coordinate.
    chunk : int
        Months processed at once (bounds memory; result independent of it).

    Returns
    -------
    DataFrame indexed by month start (``time``), with a ``time`` column ``YYYY-MM`` and columns
    ``<region>_mm`` and ``<region>_Gt`` in the order of ``masks``.
    """
    if isinstance(twsa, xr.DataArray):
        if times is None:
            times = twsa["time"].values
        twsa = twsa.transpose("time", ...)
    banded = hasattr(twsa, "band")  # a field read by latitude bands (gtws_dl.evaluate.bands.LazyField)
    data = twsa
    shape = tuple(data.shape)
    area = np.asarray(cell_area, float)
    if len(shape) != 3 or shape[1:] != area.shape:
        raise ValueError(
            f"twsa has shape {shape} and cell_area {area.shape}; expected (time, nlat, nlon) and (nlat, nlon)"
        )
    if times is None or len(times) != shape[0]:
        raise ValueError(
            f"times must give one stamp per month of twsa ({shape[0]}), got {None if times is None else len(times)}"
        )
    w = (
        area
        if land_fraction is None
        else area * _check(np.asarray(land_fraction, float), area.shape, "land_fraction")
    )
    names = list(masks)
    M = [_check(np.asarray(masks[n]).astype(bool), area.shape, f"mask {n!r}") for n in names]
    total_area = np.array([w[m].sum() for m in M])  # m²
    T, H = shape[0], shape[1]
    if banded:  # a band of rows at a time, every month: memory months x rows x lon, never the whole field
        rows = max(1, min(H, int(BAND_BYTES // (8 * max(1, T) * shape[2]))))
        spans, step = [(r0, min(H, r0 + rows)) for r0 in range(0, H, rows)], max(1, T)
    else:  # ``chunk`` months at a time over every cell
        spans, step = [(0, H)], chunk
    num, den = np.zeros((T, len(names))), np.zeros((T, len(names)))
    for r0, r1 in spans:
        Wr = np.stack([m[r0:r1].ravel() for m in M], axis=1) * w[r0:r1].ravel()[:, None]  # (cells, regions)
        for t0 in range(0, T, step):
            t1 = min(T, t0 + step)
            block = np.asarray(data.band(r0, r1) if banded else data[t0:t1], dtype=float).reshape(t1 - t0, -1)
            valid = np.isfinite(block)
            num[t0:t1] += np.where(valid, block, 0.0) @ Wr
            den[t0:t1] += valid.astype(float) @ Wr
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    index = month_starts(times)
    cols: dict[str, np.ndarray] = {"time": index.strftime("%Y-%m").to_numpy()}
    for k, n in enumerate(names):
        cols[f"{n}_mm"] = mean[:, k]
        cols[f"{n}_Gt"] = mean[:, k] * total_area[k] / KG_PER_GT
    return pd.DataFrame(cols, index=index)


def _check(a: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    if a.shape != shape:
        raise ValueError(f"{what} has shape {a.shape}, expected {shape}")
    return a


def write_series_xlsx(
    sheets: Mapping[str, pd.DataFrame],
    path: str | Path,
    *,
    readme: Mapping[str, object] | Sequence[str],
) -> Path:
    """Write regional series to an Excel workbook, atomically.

    The first sheet ``README`` holds ``readme`` (a mapping → two columns *item*/*value*; a list →
    one line per row: units, method, version, sources). Then one sheet per entry of ``sheets``
    (sheet name = key, ≤ 31 characters, none of ``[]:*?/\\``), written without the index (the
    ``time`` column carries the month), header row frozen, columns sized to their content.
    Written to ``<name>.tmp-<pid>`` then moved into place with :func:`os.replace`.
    """
    from openpyxl.utils import get_column_letter

    path = Path(path)
    bad = [s for s in sheets if not s or len(s) > 31 or any(c in s for c in "[]:*?/\\") or s == "README"]
    if bad:
        raise ValueError(f"invalid sheet names {bad}: 1-31 characters, none of []:*?/\\, not 'README'")
    if isinstance(readme, Mapping):
        rdf = pd.DataFrame({"item": list(readme), "value": [str(v) for v in readme.values()]})
    else:
        rdf = pd.DataFrame({"README": [str(v) for v in readme]})
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with pd.ExcelWriter(tmp, engine="openpyxl") as xw:
            for name, df in [("README", rdf), *sheets.items()]:
                df.to_excel(xw, sheet_name=name, index=False)
                ws = xw.sheets[name]
                ws.freeze_panes = "A2"
                for j, col in enumerate(df.columns, start=1):
                    longest = max([len(str(col))] + [len(_fmt(v)) for v in df[col].head(500)])
                    ws.column_dimensions[get_column_letter(j)].width = min(100, max(8, longest + 2))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    LOGGER.info("wrote %s (%d sheets + README)", path, len(sheets))
    return path


def _fmt(v: object) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)
