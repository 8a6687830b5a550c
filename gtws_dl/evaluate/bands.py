"""(time, lat, lon) fields evaluated in latitude bands: memory bounded in area.

The protocol's metrics are per-cell maps (summarised by area-weighted medians) and area-mean series (sums over
cells): both are the same whether a field is read whole or band by band. A field is a numpy array, an xarray
DataArray, or a :class:`LazyField` that reads a band when asked (a product on disk, the truth on other months);
the float64 working copies of the metrics are then (time, rows, lon), never (time, lat, lon).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

BAND_MB = 256.0  # float64 working set of one band of the evaluation (about 16 copies of months x rows x lon)


class LazyField:
    """A (time, lat, lon) field read by latitude bands: ``read(r0, r1)`` -> (time, r1 - r0, lon) array.

    ``months`` selects time steps (a boolean mask or indices) without reading anything; ``masked(keep)`` sets
    cells outside ``keep`` (lat, lon) to NaN when read.
    """

    def __init__(self, read: Callable[[int, int], np.ndarray], shape: tuple[int, int, int]) -> None:
        self._read, self.shape = read, tuple(int(n) for n in shape)

    @property
    def ndim(self) -> int:
        return 3

    def band(self, r0: int, r1: int) -> np.ndarray:
        return np.asarray(self._read(r0, r1))

    def months(self, sel) -> LazyField:
        idx = np.flatnonzero(sel) if np.asarray(sel).dtype == bool else np.asarray(sel)
        return LazyField(lambda r0, r1: self.band(r0, r1)[idx], (len(idx), *self.shape[1:]))

    def masked(self, keep: np.ndarray) -> LazyField:
        def read(r0: int, r1: int) -> np.ndarray:
            out = np.array(self.band(r0, r1), dtype=np.float32)
            out[:, ~keep[r0:r1]] = np.nan
            return out

        return LazyField(read, self.shape)


def band(x, r0: int, r1: int) -> np.ndarray:
    """Rows ``r0 .. r1`` of a (time, lat, lon) field (numpy, xarray or :class:`LazyField`)."""
    return x.band(r0, r1) if isinstance(x, LazyField) else np.asarray(x[:, r0:r1])


def take(x, sel):
    """The time steps ``sel`` of a field, lazily for a :class:`LazyField`."""
    return x.months(sel) if isinstance(x, LazyField) else x[sel]


def bands(shape: tuple[int, ...], mb: float = BAND_MB) -> Iterator[tuple[int, int]]:
    """Latitude bands ``(r0, r1)`` of a (time, lat, lon) field whose float64 working set is about ``mb`` MB."""
    T, H, W = shape[-3:]
    rows = max(1, min(H, int(mb * 2**20 // (16 * 8 * max(1, T) * max(1, W)))))
    for r0 in range(0, H, rows):
        yield r0, min(H, r0 + rows)


def finite_months(*fields) -> np.ndarray:
    """(time,) True where every field has a finite value in some cell (the same cell)."""
    out = np.zeros(fields[0].shape[0], bool)
    for r0, r1 in bands(fields[0].shape):
        ok = np.isfinite(band(fields[0], r0, r1))
        for f in fields[1:]:
            ok &= np.isfinite(band(f, r0, r1))
        out |= ok.any(axis=(1, 2))
    return out


def mapped(x, fn: Callable[[np.ndarray], np.ndarray]) -> LazyField:
    """``fn`` applied to each band of ``x`` when read (a per-cell transform: decomposition, deseasonalizing)."""
    return LazyField(lambda r0, r1: fn(band(x, r0, r1)), x.shape)


def maps(x, fn: Callable[[np.ndarray], dict[str, np.ndarray]], *others) -> dict[str, np.ndarray]:
    """Per-cell maps of ``x`` (and ``others``, same rows): ``fn(band of x, bands of others...)`` returns
    ``{name: (..., rows, lon)}``, assembled over the bands into ``{name: (..., lat, lon)}`` float64."""
    out: dict[str, np.ndarray] = {}
    for r0, r1 in bands(x.shape):
        res = fn(band(x, r0, r1), *(band(o, r0, r1) for o in others))
        for k, v in res.items():
            v = np.asarray(v, dtype=np.float64)
            if k not in out:
                out[k] = np.full((*v.shape[:-2], x.shape[1], x.shape[2]), np.nan)
            out[k][..., r0:r1, :] = v
    return out


STAGE_MB = 256.0  # one time block of a field staged by :func:`stage` (float32 months x lat x lon)


def stage(read_months: Callable[[np.ndarray], np.ndarray], pos: np.ndarray, n_months: int,
          shape: tuple[int, int], path, *, progress: str = "") -> LazyField:
    """Copy a (time, lat, lon) field into a Zarr store chunked in latitude bands, and read it back by bands.

    A field stored by months (a twin truth, a NetCDF written month by month) is read once, in time blocks of
    about :data:`STAGE_MB`: ``read_months(idx)`` returns its months ``idx`` (indices into the source) as
    (len(idx), lat, lon); ``pos[i]`` is the report month of source month ``i`` (-1: not a report month).
    Months the source lacks are NaN. The store ``path`` (scratch, deleted by the caller) is chunked
    (12 months, the rows of :func:`bands`, lon), so a band reads only its own rows."""
    import zarr
    from tqdm.auto import tqdm

    H, W = shape
    rows = next(iter(bands((n_months, H, W))))[1]
    arr = zarr.create_array(str(path), shape=(n_months, H, W), chunks=(min(12, max(1, n_months)), rows, W),
                            dtype="float32", fill_value=np.nan, overwrite=True)
    step = max(12, int(STAGE_MB * 2**20 // (4 * H * W)) // 12 * 12)
    pos = np.asarray(pos)
    starts = range(0, n_months, step)
    for t0 in tqdm(starts, desc=progress or f"staging {path}", disable=len(starts) < 3, leave=False):
        t1 = min(n_months, t0 + step)
        src = np.flatnonzero((pos >= t0) & (pos < t1))
        if not len(src):
            continue
        block = np.full((t1 - t0, H, W), np.nan, np.float32)
        block[pos[src] - t0] = np.asarray(read_months(src), np.float32)
        arr[t0:t1] = block
    return LazyField(lambda r0, r1: np.asarray(arr[:, r0:r1]), (n_months, H, W))
