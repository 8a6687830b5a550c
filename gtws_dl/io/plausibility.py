"""Plausibility of the values at the reader edge (issue 17): no silent wrong answers.

Every reader summarises the values it is about to convert (file units, after CF masking and unpacking) and checks
three classes of fault before anything is converted or written, raising
:class:`~gtws_dl.io.errors.InputFileError` naming the file(s), the variable, the range found and the range expected:

1. **sentinel**: finite values equal to a common fill value (:data:`SENTINELS`, and −32767 after unpacking an
   int16 variable) that the file does not declare as ``_FillValue``/``missing_value`` (declared ones are already
   NaN after CF masking), or ±Inf. The message gives the sentinel, its count and the files holding it.
2. **magnitude**: a finite value outside the physical range :class:`~gtws_dl.io.era5_variables.Bounds` of the
   variable (canonical units), or a robust statistic (99th percentile, 5–95 % spread) outside its typical range.
3. **unit-label contradiction**: a magnitude fault that disappears when the values are read in another unit the
   variable accepts (``cm`` → ``m``) or under a known mix-up (monthly totals read as daily means, °C as K): the
   message says which unit the magnitude suggests.

Each file is judged on its own and all files together (one file of a record in other units is caught even when
the record's percentiles pass).

Cost: :func:`summarize` reads the data once in blocks of :data:`BLOCK_MONTHS` time steps (exact min/max, sentinel
and Inf counts) and counts every finite value into a histogram of bins 0.1 % of a value wide (:func:`_bin_ids`),
so the percentiles use every value, to within 0.1 %; memory is one batch. Arrays the reader holds in memory
anyway (mascons, vegetation) are not re-read.

Bypass: only by name, ``data.plausibility.skip=[tp]`` (or ``[all]``) through :class:`Policy`; a waived finding is
logged as a WARNING and recorded (the cube builder writes the policy into ``manifest["plausibility"]``).

Size: the three fault classes share one summary pass and one message builder; split, they would re-read the data.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import dask
import dask.array
import numpy as np
import pandas as pd
import xarray as xr

from gtws_dl.io._common import norm_units
from gtws_dl.io.era5_variables import VARIABLES, Bounds
from gtws_dl.io.errors import InputFileError, describe_files, input_error

LOGGER = logging.getLogger(__name__)

#: Fill values that appear in files without being declared (netCDF default fills, CMIP 1e20, float32 max, ...).
SENTINELS: tuple[float, ...] = (
    -9999.0,
    -99999.0,
    -999999.0,
    -999.0,
    -32767.0,
    -32768.0,
    9.969209968386869e36,
    -9.969209968386869e36,
    1.0e20,
    -1.0e20,
    3.4028234663852886e38,
    -3.4028234663852886e38,
)
_INT_SENTINELS = {np.dtype("int16"): (-32767,)}  # packed: the netCDF default short fill, after unpacking
BLOCK_MONTHS = 12
_SHIFT = 13  # histogram of the values' float32 bits >> 13: bins 2**-10 = 0.1 % of a value wide
#: One file's typical statistic may be this many times outside the record's range before it is refused: one
#: monsoon month of a small box is not a unit error; the unit errors seen (monthly totals, m vs mm) are 30-1000x.
PIECE_SLACK = 3.0
MIN_NODES_CONSTANT = 16  # a one-value field of fewer finite nodes (a tiny dry box) is not judged
BATCH_VALUES = 1 << 25  # values read per dask.compute (128 MB of float32)
ADD_VALUES = 1 << 22  # values counted at once (their float64 temporaries: about 40 bytes per value)

#: Bounds of the non-ERA5 inputs, canonical units (see docs/RELIABILITY.md, "Plausibility (issue 17)").
#: TWSA: |x| <= 10 m w.e. covers the ice-sheet and glacier mascons (Greenland/Alaska trends reach about
#: -150 mm/yr, i.e. -3000 mm after 20 years; twice that margin); the 5-95 % spread of a GRACE grid (seasonal
#: cycle, ocean and land) is 50..1000 mm, so a spread under 5 mm or above 2000 mm is a wrong scale.
OTHER_BOUNDS: dict[str, Bounds] = {
    "lwe_thickness": Bounds(-1.0e4, 1.0e4, "TWSA (liquid water equivalent thickness)",
                            typical=("spread", 5.0, 2000.0), constant_ok=True, gaps_ok=True),  # mascon.py names constant months
    "LAI": Bounds(-1.0, 15.0, "leaf area index", constant_ok=True, gaps_ok=True,  # 0 over a desert box
                  hints=(("LAI x10 (a scale_factor of 0.1 not applied)", 0.1, 0.0),
                         ("LAI x100 (a scale_factor of 0.01 not applied)", 0.01, 0.0))),
    "SIF": Bounds(-2.0, 5.0, "monthly-mean solar-induced fluorescence", constant_ok=True, gaps_ok=True,
                  hints=(("SIF x1000 (e.g. uW labelled mW)", 0.001, 0.0),)),
    "land_cover_fraction": Bounds(-1.0e-3, 1.001, "land-cover class fraction", constant_ok=True, gaps_ok=True,
                                  hints=(("percent labelled as a fraction", 0.01, 0.0),)),
}

#: Names ``data.plausibility.skip`` accepts (case-insensitive), besides ``all``.
KNOWN: tuple[str, ...] = (*VARIABLES, *OTHER_BOUNDS)

_STAT_NAME = {"p99": "99th percentile", "p99abs": "99th percentile of |x|",
              "spread": "robust spread (95th minus 5th percentile)"}


def bounds_of(variable: str) -> Bounds:
    """The :class:`Bounds` of an ERA5 short name or of ``lwe_thickness``/``LAI``/``SIF``/``land_cover_fraction``."""
    if variable in VARIABLES and VARIABLES[variable].bounds is not None:
        return VARIABLES[variable].bounds
    return OTHER_BOUNDS[variable]


# --------------------------------------------------------------------------------------------- policy
@dataclass
class Policy:
    """Which variables' checks are waived (``data.plausibility.skip``) and what was waived."""

    skip: tuple[str, ...] = ()
    waived: list[dict] = field(default_factory=list)

    @classmethod
    def from_names(cls, names: Iterable[str] | None, *, key: str = "data.plausibility.skip") -> Policy:
        """Validate the names (ERA5 short names, ``lwe_thickness``, ``LAI``, ``SIF``, ``land_cover_fraction``
        or ``all``, case-insensitive); an unknown name is a ``ValueError`` naming the key."""
        if isinstance(names, str):
            names = [names]
        out = []
        known = {k.lower(): k for k in KNOWN}
        for n in names or ():
            s = str(n).strip()
            if s.lower() == "all":
                out.append("all")
            elif s.lower() in known:
                out.append(known[s.lower()])
            else:
                raise ValueError(f"config key {key}: unknown variable {s!r}; expected 'all' or names of "
                                 f"{list(KNOWN)}, e.g. {key}=[tp]")
        return cls(skip=tuple(dict.fromkeys(out)))

    def skips(self, variable: str) -> bool:
        return "all" in self.skip or variable.lower() in {s.lower() for s in self.skip}

    def waive(self, err: InputFileError, variable: str, paths) -> None:
        """Raise ``err`` unless ``variable`` is skipped; if it is, log the finding as a WARNING and record it
        (``manifest["plausibility"]["waived"]``)."""
        if not self.skips(variable):
            raise err
        LOGGER.warning("plausibility check of %r waived by data.plausibility.skip (recorded in the cube manifest): %s",
                       variable, err)
        entry = {"variable": variable, "files": describe_files(paths), "finding": str(err)}
        if entry not in self.waived:  # the cube builder may open an input more than once
            self.waived.append(entry)

    def record(self) -> dict:
        """What the cube manifest stores under ``plausibility``."""
        return {"skip": list(self.skip), "waived": list(self.waived),
                "checks": "undeclared fill sentinels, physical bounds, typical magnitude, unit label vs magnitude "
                          "(gtws_dl/io/plausibility.py)"}


def as_policy(obj: Policy | Iterable[str] | None) -> Policy:
    return obj if isinstance(obj, Policy) else Policy.from_names(obj)


# --------------------------------------------------------------------------------------------- summary
@dataclass
class Summary:
    """What the checks need of one variable: exact extremes and counts, and a histogram of every finite value
    (:func:`_bin_ids`: bin ids ``bins`` with their ``counts``) for the percentiles."""

    n_finite: int = 0
    n_inf: int = 0
    vmin: float = math.inf
    vmax: float = -math.inf
    sentinels: dict[float, int] = field(default_factory=dict)
    sentinel_files: dict[float, list[str]] = field(default_factory=dict)
    inf_files: list[str] = field(default_factory=list)
    declared: dict[str, str] = field(default_factory=dict)  # file -> declared fills
    bins: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    counts: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    path: str = ""  # the file, for one file's summary ("" once merged)
    constant: list[tuple[str, str, float]] = field(default_factory=list)  # (file, step, value) of one-value steps
    empty: list[tuple[str, str]] = field(default_factory=list)  # (file, step) of all-NaN steps

    def values(self, scale: float = 1.0, offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """(representative values ``x * scale + offset``, their counts) of the histogram."""
        return _bin_values(self.bins) * scale + offset, self.counts

    @staticmethod
    def merge(parts: Sequence[Summary]) -> Summary:
        out = Summary()
        for p in parts:
            out.n_finite += p.n_finite
            out.n_inf += p.n_inf
            out.vmin, out.vmax = min(out.vmin, p.vmin), max(out.vmax, p.vmax)
            for s, c in p.sentinels.items():
                out.sentinels[s] = out.sentinels.get(s, 0) + c
                out.sentinel_files.setdefault(s, []).extend(p.sentinel_files.get(s, []))
            out.inf_files.extend(p.inf_files)
            out.declared.update(p.declared)
        out.bins, out.counts = _add_histograms([(p.bins, p.counts) for p in parts])
        out.constant = [c for p in parts for c in p.constant]
        out.empty = [e for p in parts for e in p.empty]
        return out


def _bin_ids(v: np.ndarray) -> np.ndarray:
    """Histogram bin of each value: its float32 bits without the lowest :data:`_SHIFT` mantissa bits (sign,
    exponent and 10 mantissa bits stay: bins 0.1 % of a value wide, one integer shift per value)."""
    return (np.asarray(v, np.float32).view(np.int32) >> _SHIFT).astype(np.int64)


def _bin_values(bins: np.ndarray) -> np.ndarray:
    """The middle value of each bin of :func:`_bin_ids`."""
    bits = (np.asarray(bins, np.int64) << _SHIFT) | (1 << (_SHIFT - 1))
    return bits.astype(np.int32).view(np.float32).astype(np.float64)


def _add_histograms(parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    parts = [(b, c) for b, c in parts if b.size]
    if not parts:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    bins, inv = np.unique(np.concatenate([b for b, _ in parts]), return_inverse=True)
    return bins, np.bincount(inv, weights=np.concatenate([c for _, c in parts])).astype(np.int64)


def _declared(encoding: Mapping) -> str:
    fills = {k: encoding.get(k) for k in ("_FillValue", "missing_value") if encoding.get(k) is not None}
    return ", ".join(f"{k}={_num(v)}" for k, v in fills.items()) or "no _FillValue/missing_value"


def _num(v) -> str:
    a = np.asarray(v).ravel()
    return "/".join(f"{float(x):g}" for x in a) if a.size else "[]"


class _Accumulator:
    """Summary of one file's variable, fed block by block."""

    def __init__(self, shape: tuple[int, ...], *, path, encoding: Mapping) -> None:
        enc = dict(encoding)
        self.path = str(path)
        self.sentinels = list(SENTINELS)
        self.tol = {s: abs(s) * 1e-6 for s in self.sentinels}
        dtype = enc.get("dtype")
        if dtype is not None and np.dtype(dtype) in _INT_SENTINELS and ("scale_factor" in enc or "add_offset" in enc):
            scale, offset = float(enc.get("scale_factor", 1.0)), float(enc.get("add_offset", 0.0))
            declared = {float(x) for k in ("_FillValue", "missing_value") if enc.get(k) is not None
                        for x in np.asarray(enc[k]).ravel()}
            for raw in _INT_SENTINELS[np.dtype(dtype)]:
                s = offset + scale * raw
                # declared -> already NaN; skip where float32 cannot tell it from the packed minimum (raw + 1)
                if raw not in declared and abs(s) * 1.2e-7 < abs(scale) * 0.25:
                    self.sentinels.append(s)
                    self.tol[s] = abs(scale) * 0.25
        self.out = Summary(declared={self.path: _declared(enc)}, path=self.path)
        self.hist: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, block: np.ndarray, axis: int | None = None, labels: Sequence[str] = ()) -> None:
        """Count one block; ``axis``: its time axis, whose steps holding one value everywhere are recorded
        (``labels``: their names)."""
        if axis is not None and np.ndim(block) > 1 and np.size(block) > np.shape(block)[axis]:
            self._constant_steps(np.asarray(block), axis, labels)
        flat = np.asarray(block).ravel()
        for i0 in range(0, flat.size, ADD_VALUES):  # float64 temporaries of a slice, not of the whole block
            self._add_values(np.asarray(flat[i0:i0 + ADD_VALUES], dtype=np.float64))

    def _add_values(self, x: np.ndarray) -> None:
        out = self.out
        n_inf = int(np.count_nonzero(np.isinf(x)))
        v = x[np.isfinite(x)]
        if n_inf:
            out.n_inf += n_inf
            if self.path not in out.inf_files:
                out.inf_files.append(self.path)
        if v.size == 0:
            return
        out.n_finite += v.size
        lo, hi = float(v.min()), float(v.max())
        out.vmin, out.vmax = min(out.vmin, lo), max(out.vmax, hi)
        for s in self.sentinels:
            if lo - self.tol[s] <= s <= hi + self.tol[s]:
                c = int(np.count_nonzero(np.abs(v - s) <= self.tol[s]))
                if c:
                    out.sentinels[s] = out.sentinels.get(s, 0) + c
                    if self.path not in out.sentinel_files.setdefault(s, []):
                        out.sentinel_files[s].append(self.path)
        ids = _bin_ids(v)
        lo_id = int(ids.min())
        counts = np.bincount(ids - lo_id)
        nz = np.flatnonzero(counts)
        self.hist.append((nz + lo_id, counts[nz]))
        if len(self.hist) >= 8:
            self.hist = [_add_histograms(self.hist)]

    def _constant_steps(self, block: np.ndarray, axis: int, labels: Sequence[str]) -> None:
        x = np.moveaxis(block, axis, 0).reshape(block.shape[axis], -1)
        n = np.count_nonzero(~np.isnan(x), axis=1)  # +-Inf are refused on their own
        lo, hi = np.fmin.reduce(x, axis=1), np.fmax.reduce(x, axis=1)  # fmin/fmax skip NaN
        def name(k: int) -> str:
            return labels[k] if k < len(labels) else f"time step {k}"

        for k in np.flatnonzero((n >= MIN_NODES_CONSTANT) & (lo == hi)):
            self.out.constant.append((self.path, name(k), float(lo[k])))
        self.out.empty += [(self.path, name(k)) for k in np.flatnonzero(n == 0)]

    def result(self) -> Summary:
        self.out.bins, self.out.counts = _add_histograms(self.hist)
        return self.out


def summarize_many(items: Sequence[tuple[xr.DataArray, object, Mapping | None]], time_dim: str | None,
                   *, batch_values: int = BATCH_VALUES) -> list[Summary]:
    """:func:`summarize` of several ``(da, path, encoding)`` (e.g. one variable's per-year files): blocks of
    :data:`BLOCK_MONTHS` steps are read together, one ``dask.compute`` per ``batch_values`` values, so many
    small files cost one scheduler pass, not one each; memory stays one batch."""
    accs, blocks = [], []
    for k, (da, path, enc) in enumerate(items):
        accs.append(_Accumulator(da.shape, path=path, encoding=da.encoding if enc is None else enc))
        n_t = da.sizes[time_dim] if time_dim and time_dim in da.dims else 1
        per_step = int(np.prod(da.shape)) // max(1, n_t)  # values of one step (e.g. land cover: classes x cells)
        step = max(1, min(BLOCK_MONTHS, batch_values // max(1, per_step))) if time_dim and time_dim in da.dims else n_t
        axis = da.dims.index(time_dim) if time_dim and time_dim in da.dims else None
        names = _step_names(da, time_dim) if axis is not None else []
        for i0 in range(0, n_t, step):
            blk = da.isel({time_dim: slice(i0, i0 + step)}) if step < n_t else da
            blocks.append((k, blk.data, axis, names[i0 : i0 + step]))
    batch: list[tuple[int, object, int | None, list[str]]] = []
    size = 0

    def flush() -> None:
        lazy = [i for i, (_, b, _, _) in enumerate(batch) if isinstance(b, dask.array.Array)]
        done = dict(zip(lazy, dask.compute(*[batch[i][1] for i in lazy]), strict=True)) if lazy else {}
        for i, (k, b, axis, names) in enumerate(batch):
            accs[k].add(done[i] if i in done else b, axis, names)
        batch.clear()

    for k, b, axis, names in blocks:
        batch.append((k, b, axis, names))
        size += int(np.prod(b.shape))
        if size >= batch_values:
            flush()
            size = 0
    flush()
    return [a.result() for a in accs]


def _step_names(da: xr.DataArray, time_dim: str) -> list[str]:
    """``YYYY-MM`` of each step where the time coordinate holds dates, else ``time step k``."""
    t = da[time_dim].values if time_dim in da.coords else None
    if t is not None and np.issubdtype(np.asarray(t).dtype, np.datetime64):
        return [f"{m:%Y-%m}" for m in pd.DatetimeIndex(t)]
    return [f"time step {k}" for k in range(da.sizes[time_dim])]


def summarize(da: xr.DataArray, time_dim: str | None, *, path, encoding: Mapping | None = None) -> Summary:
    """One pass over ``da`` (file units) in time blocks; ``encoding`` (default ``da.encoding``) tells the declared
    fills and the packing (int16 + ``scale_factor``/``add_offset``) for the unpacked-sentinel check."""
    return summarize_many([(da, path, encoding)], time_dim)[0]


# --------------------------------------------------------------------------------------------- checks
def _percentiles(values: np.ndarray, counts: np.ndarray, qs: Sequence[float]) -> list[float]:
    """Percentiles ``qs`` (0-100) of a histogram: the value of the bin holding each rank."""
    order = np.argsort(values, kind="stable")
    v, cum = values[order], np.cumsum(counts[order])
    return [float(v[min(np.searchsorted(cum, q / 100.0 * cum[-1], side="left"), v.size - 1)]) for q in qs]


def _stat(name: str, hist: tuple[np.ndarray, np.ndarray]) -> float:
    values, counts = hist
    if name == "p99":
        return _percentiles(values, counts, [99])[0]
    if name == "p99abs":
        return _percentiles(np.abs(values), counts, [99])[0]
    if name == "spread":
        p5, p95 = _percentiles(values, counts, [5, 95])
        return p95 - p5
    raise ValueError(f"unknown statistic {name!r}")


def _faults(vmin: float, vmax: float, hist: tuple[np.ndarray, np.ndarray], b: Bounds) -> tuple[str, str] | None:
    """(expected, found) of the first failed magnitude check on canonical values (``hist``: values, counts), or
    None."""
    if vmin < b.lo or vmax > b.hi:
        return f"values in [{b.lo:g}, {b.hi:g}]", f"values in [{vmin:.6g}, {vmax:.6g}]"
    if b.positive_max is not None and hist[1].size:
        pos = float(hist[1][hist[0] > 0].sum() / hist[1].sum())
        if pos > b.positive_max:
            return f"at most {b.positive_max:.0%} of the values above 0", f"{pos:.0%} above 0"
    if b.typical is not None and hist[0].size:
        name, lo, hi = b.typical
        st = _stat(name, hist)
        if not lo <= st <= hi:
            rng = f"[{lo:g}, {hi:g}]" if lo > -math.inf else f"at most {hi:g}"
            return f"a {_STAT_NAME[name]} in {rng}", f"{st:.4g} (values in [{vmin:.6g}, {vmax:.6g}])"
    return None


def _closeness(hist: tuple[np.ndarray, np.ndarray], b: Bounds) -> float:
    """|log10| distance of the typical statistic from the geometric middle of its range (0 without one)."""
    if b.typical is None or not hist[0].size or b.typical[1] <= 0:
        return 0.0
    name, lo, hi = b.typical
    st = _stat(name, hist)
    return abs(math.log10(st / math.sqrt(lo * hi))) if st > 0 else math.inf


def _alternatives(table: Mapping[str, tuple[float, float]], label: str, b: Bounds) -> list[tuple[str, float, float]]:
    """Re-interpretations to try: the bounds' hints, then the other accepted units (smallest change first)."""
    f0, o0 = table[norm_units(label)]
    seen, alts = {(1.0, 0.0)}, []
    for desc, sc, of in b.hints:
        seen.add((round(sc, 12), round(of, 9)))
        alts.append((desc, sc, of))
    units = []
    for u, (f, o) in table.items():
        sc, of = f / f0, o - o0 * f / f0
        key = (round(sc, 12), round(of, 9))
        if key not in seen:
            seen.add(key)
            units.append((f"in {u!r} ({sc:g} x the values {label!r} implies)", sc, of))
    units.sort(key=lambda a: abs(math.log10(a[1])) if a[1] > 0 else math.inf)
    return alts + units


def check_values(
    summaries: Summary | Sequence[Summary],
    *,
    paths,
    variable: str,
    units: str | None,
    table: Mapping[str, tuple[float, float]],
    canonical: str,
    bounds: Bounds | None = None,
    policy: Policy | Iterable[str] | None = None,
) -> None:
    """Raise :class:`InputFileError` for an undeclared sentinel, a value outside the bounds or a contradicting unit
    label (see the module docstring); waived, with a WARNING, where ``policy`` skips ``variable``.

    ``units`` is the file's label; an unknown label returns silently (the unit conversion refuses it next).
    """
    pol = as_policy(policy)
    key = norm_units(units)
    if key not in table:
        return
    b = bounds if bounds is not None else bounds_of(variable)
    pieces = [summaries] if isinstance(summaries, Summary) else list(summaries)
    s = Summary.merge(pieces)
    try:
        wide = _widened(b, PIECE_SLACK)
        for piece in pieces if len(pieces) > 1 else ():  # one file in other units: named, even if the record passes
            _check(piece, paths=[piece.path] if piece.path else paths, variable=variable, units=str(units),
                   table=table, canonical=canonical, b=wide)
        _check(s, paths=paths, variable=variable, units=str(units), table=table, canonical=canonical, b=b)
    except InputFileError as err:
        pol.waive(err, variable, paths)
        return
    if pol.skips(variable):
        LOGGER.warning("data.plausibility.skip names %r, but its values pass every plausibility check "
                       "(nothing waived)", variable)


def _widened(b: Bounds, slack: float) -> Bounds:
    """``b`` with its typical range widened ``slack`` times (one file may hold one season of a small box)."""
    if b.typical is None:
        return b
    name, lo, hi = b.typical
    return replace(b, typical=(name, lo / slack if lo > 0 else lo, hi * slack))


def _check(s: Summary, *, paths, variable: str, units: str, table, canonical: str, b: Bounds) -> None:
    bypass = f"data.plausibility.skip=[{variable}]"
    for sent in sorted(s.sentinels, key=lambda x: -s.sentinels[x]):
        files = s.sentinel_files[sent]
        declared = "; ".join(f"{describe_files([f])}: {s.declared.get(f, '?')}" for f in files[:2])
        raise input_error(
            files, variable,
            "no undeclared fill values (a fill value must be declared as _FillValue or missing_value)",
            f"{s.sentinels[sent]} of {s.n_finite} values equal to the fill sentinel {sent:g} {units}, which the "
            f"file does not declare ({declared})",
            hint=f"declare it, e.g. `ncatted -a _FillValue,{variable},o,d,{sent:g} FILE`, or fix the file; to "
                 f"read the values as data anyway: {bypass}",
        )
    if s.n_inf:
        raise input_error(
            s.inf_files, variable, "finite values or NaN", f"{s.n_inf} infinite values",
            hint=f"replace them by NaN (missing) or fix the file; to read them anyway: {bypass}",
        )
    if s.empty and not b.gaps_ok:
        files = sorted({f for f, _ in s.empty})
        more = f" and {len(s.empty) - 6} more" if len(s.empty) > 6 else ""
        raise input_error(files, variable, "data in every month",
                          f"all-NaN months {', '.join(step for _, step in s.empty[:6])}{more}",
                          hint=f"the download is incomplete; fetch those months again; to read them anyway: {bypass}")
    if s.n_finite == 0:
        return  # all-NaN: the readers' own coverage/NaN checks name it
    if s.constant and not b.constant_ok:
        files = sorted({f for f, _, _ in s.constant})
        shown = ", ".join(f"{step} ({value:g} {units})" for _, step, value in s.constant[:4])
        raise input_error(
            files, variable, f"a field that varies over the grid in every time step ({b.what})",
            f"{len(s.constant)} step(s) holding one value everywhere: {shown}",
            hint=f"a missing month must be left out (the record is then refused as having a gap) or NaN, not filled "
                 f"with a constant; download those months again; to read them anyway: {bypass}")
    f0, o0 = table[norm_units(units)]
    cmin, cmax = s.vmin * f0 + o0, s.vmax * f0 + o0
    fault = _faults(cmin, cmax, s.values(f0, o0), b)
    if fault is None:
        return
    expected, found = fault
    expected += f" {canonical} ({b.what})"
    found += f" {canonical}, read as {units!r}"
    fits = []
    for k, (desc, sc, of) in enumerate(_alternatives(table, units, b)):
        lo, hi = sorted((cmin * sc + of, cmax * sc + of))
        alt = s.values(f0 * sc, o0 * sc + of)
        if _faults(lo, hi, alt, b) is None:
            fits.append((k < len(b.hints), _closeness(alt, b), desc))
    if fits:  # a known mix-up (hint) first, else the unit that puts the typical statistic nearest its range's middle
        desc = min(fits, key=lambda f: (not f[0], 0.0 if f[0] else f[1]))[2]
        raise input_error(
            paths, variable, expected, found,
            hint=f"The unit label {units!r} contradicts the magnitude: the values fit if they are {desc}. "
                 f"Fix the file's units attribute (or the data); to read them as labelled anyway: {bypass}",
        )
    raise input_error(paths, variable, expected, found,
                      hint=f"the file holds another quantity, wrong units or corrupt values; to read them anyway: "
                           f"{bypass}")


def check_array(
    da: xr.DataArray,
    time_dim: str | None,
    *,
    path,
    variable: str,
    table: Mapping[str, tuple[float, float]],
    canonical: str,
    policy: Policy | Iterable[str] | None = None,
) -> None:
    """:func:`summarize` + :func:`check_values` for one file's variable (mascon, LAI, SIF, land cover)."""
    if norm_units(da.attrs.get("units")) not in table:
        return
    check_values(summarize(da, time_dim, path=path), paths=[path], variable=variable, units=da.attrs.get("units"),
                 table=table, canonical=canonical, policy=policy)
