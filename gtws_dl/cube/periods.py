"""The cube's periods: from the config where a key gives one, otherwise from what the input files cover.

==============  ===================================  ==========================================================
period          key that overrides (null = data)     rule when the key is null (or absent)
==============  ===================================  ==========================================================
``record``      ``data.start``, ``data.end``         the months every required forcing covers: the ERA5
                                                     variables' common record (LAI, SIF and land cover are
                                                     filled outside their records, so they do not limit it)
``era5``        —                                    what the ERA5 files cover (for the messages)
``grace``       —                                    the months the centres' mascon files hold in the record
``stats``       ``data.stats_period``                first GRACE month .. the last training month of the
                                                     split (:func:`gtws_dl.split.time_split` with
                                                     ``data.split.val_months`` / ``data.split.gap_months``) of
                                                     each centre alone, the earliest of them: any target
                                                     subset trained on the cube has its statistics inside
                                                     its training months
``train``,      ``datamodule.val_months`` /          the same split of all centres' GRACE months (training
``validation``  ``gap_months`` at training time      recomputes it from the targets; recorded here)
``baseline``    ``data.baseline``                    config only (the anomaly reference)
==============  ===================================  ==========================================================

Everything here runs on metadata (time axes) before the first block of the cube is computed, so a period the
files cannot serve is refused at once, naming the key, its value and what the files cover.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from gtws_dl.config import ConfigError
from gtws_dl.io.errors import InputFileError, describe_files
from gtws_dl.split import time_split

LOGGER = logging.getLogger(__name__)


def ym(t: pd.Timestamp) -> str:
    return f"{t:%Y-%m}"


@dataclass(frozen=True)
class Period:
    """First and last month of a period, where it came from (``config`` / ``data``) and why."""

    start: pd.Timestamp
    end: pd.Timestamp
    source: str  # "config" | "data"
    key: str = ""  # the config key(s) that set it, or that would override it
    rule: str = ""  # how the data chose it
    months: int | None = None  # months with data (GRACE, split roles)
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        out = {"start": ym(self.start), "end": ym(self.end), "from": self.source}
        if self.key:
            out["key"] = self.key
        if self.rule:
            out["rule"] = self.rule
        if self.months is not None:
            out["months"] = int(self.months)
        return {**out, **self.extra}

    def strings(self) -> tuple[str, str]:
        return ym(self.start), ym(self.end)


@dataclass
class Periods:
    """The resolved periods of one cube (see the module docstring)."""

    record: Period
    era5: Period
    grace: dict[str, Period]
    stats: Period
    baseline: Period
    train: Period | None = None
    validation: Period | None = None

    @property
    def times(self) -> pd.DatetimeIndex:
        return pd.date_range(self.record.start, self.record.end, freq="MS")

    def items(self):
        yield "record", self.record
        yield "era5", self.era5
        for c, p in self.grace.items():
            yield f"grace_{c}", p
        yield "stats", self.stats
        yield "baseline", self.baseline
        if self.train is not None:
            yield "train", self.train
        if self.validation is not None:
            yield "validation", self.validation

    def to_manifest(self) -> dict:
        """``manifest["periods"]``: ``{name: {"start", "end", "from", "key", "rule", "months"}}``; the record
        also says where each of its ends came from (``start_from``, ``end_from``)."""
        return {name: p.as_dict() for name, p in self.items()}

    def log(self) -> None:
        for name, p in self.items():
            if p.source == "data":
                LOGGER.info("period %s chosen from the data: %s .. %s (%s)", name, *p.strings(), p.rule)
            else:
                LOGGER.info("period %s from the config (%s): %s .. %s", name, p.key, *p.strings())


def first_grace_month(manifest: Mapping, centre: str) -> str | None:
    """``YYYY-MM`` of ``centre``'s first GRACE month in a cube manifest's ``periods``, None when it does not say."""
    return ((manifest.get("periods") or {}).get(f"grace_{centre}") or {}).get("start")


# ------------------------------------------------------------------------------------------------- parsing
def parse_month(key: str, value) -> pd.Timestamp:
    """Month start of a ``YYYY-MM`` config value; anything else raises :class:`ConfigError` naming ``key``."""
    try:
        if isinstance(value, bool) or not isinstance(value, str | int | pd.Timestamp | np.datetime64):
            raise ValueError(value)
        return pd.Period(str(value) if isinstance(value, int) else value, freq="M").to_timestamp()
    except (ValueError, TypeError):
        raise ConfigError(f"config key {key}={value!r}: expected a month YYYY-MM, e.g. {key}=2002-04, "
                          "or null to take it from the data") from None


def parse_period(key: str, value) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(first, last) month of a ``[YYYY-MM, YYYY-MM]`` config value, first <= last."""
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
        raise ConfigError(f"config key {key}={_show(value)}: expected [first month, last month] (YYYY-MM), "
                          f"e.g. {key}=[2002-04,2020-12], or null to take it from the data")
    a, b = (parse_month(key, v) for v in value)
    if a > b:
        raise ConfigError(f"config key {key}={_show(value)}: expected its first month before its last")
    return a, b


def _show(v) -> str:
    return repr(list(v)) if isinstance(v, Sequence) and not isinstance(v, str) else repr(v)


def _cover(times: pd.DatetimeIndex) -> str:
    return f"{ym(times[0])} .. {ym(times[-1])} ({len(times)} months)"


# ------------------------------------------------------------------------------------------------ resolving
def resolve_periods(*, start, end, stats_period, baseline, val_months: int, gap_months: int,
                    era5_times: pd.DatetimeIndex, era5_files: Sequence[str | Path],
                    grace: Mapping[str, tuple[pd.DatetimeIndex, str | Path]]) -> Periods:
    """The cube's :class:`Periods` from the config values (None = from the data) and the inputs' time axes.

    ``era5_times``: the months every ERA5 variable covers; ``grace``: ``{centre: (months its file holds,
    path)}``. Raises :class:`ConfigError` when a given key cannot be served by the files,
    :class:`InputFileError` when the files themselves do not fit together (ERA5 ending before GRACE starts).
    """
    era5_times = pd.DatetimeIndex(era5_times)
    era5_desc = f"the ERA5 files (data.era5_dir: {describe_files([str(f) for f in era5_files])}) cover " \
                f"{_cover(era5_times)}"
    t_start = None if start is None else parse_month("data.start", start)
    t_end = None if end is None else parse_month("data.end", end)
    if t_start is not None and t_end is not None and t_start >= t_end:
        raise ConfigError(f"config keys data.start={start!r} and data.end={end!r}: expected data.start before "
                          f"data.end; {era5_desc} (leave both null to use the whole record)")
    cov0, cov1 = era5_times[0], era5_times[-1]
    for key, value, t in (("data.start", start, t_start), ("data.end", end, t_end)):
        if t is not None and not cov0 <= t <= cov1:
            raise ConfigError(f"config key {key}={value!r}: expected a month the ERA5 files cover; {era5_desc} "
                              f"(leave {key} null to {'start' if key == 'data.start' else 'end'} where they do)")
    r0 = cov0 if t_start is None else t_start
    r1 = cov1 if t_end is None else t_end
    given = [f"{k}={v!r}" for k, v in (("data.start", start), ("data.end", end)) if v is not None]
    if r0 >= r1:
        if given:
            raise ConfigError(f"config key {' '.join(given)}: expected a record data.start .. data.end of more than "
                              f"one month; it is {ym(r0)} .. {ym(r1)} and {era5_desc}")
        raise InputFileError(f"{era5_desc}: expected a record of more than one month", paths=era5_files)
    source = {"start": "config" if t_start is not None else "data", "end": "config" if t_end is not None else "data"}
    record = Period(r0, r1, source["start"] if source["start"] == source["end"] else "mixed",
                    key="data.start, data.end",
                    rule="the months every required forcing (ERA5) covers" if not given else
                    ("" if len(given) == 2 else "the other end from what the ERA5 files cover"),
                    extra={"start_from": source["start"], "end_from": source["end"]})
    times = pd.date_range(r0, r1, freq="MS")

    # GRACE: every centre must have months inside the record
    inside: dict[str, pd.DatetimeIndex] = {}
    grace_p: dict[str, Period] = {}
    for c, (months, path) in grace.items():
        months = pd.DatetimeIndex(months)
        sel = months[(months >= r0) & (months <= r1)]
        if len(sel) == 0:
            where = ("ends before" if len(months) and r1 < months[0] else
                     "starts after" if len(months) and r0 > months[-1] else "holds no month of")
            gdesc = f"GRACE {c} ({path}, data.grace.{c}) covers {_cover(months) if len(months) else 'no month'}"
            if given:
                raise ConfigError(f"config key {' '.join(given)}: the record {ym(r0)} .. {ym(r1)} {where} the GRACE "
                                  f"months; {gdesc}; {era5_desc}; expected a record overlapping the GRACE months")
            raise InputFileError(
                f"{describe_files([str(f) for f in era5_files])}: the ERA5 record {ym(r0)} .. {ym(r1)} "
                f"(data.era5_dir; the cube's record data.start .. data.end is chosen from it) {where} GRACE {c}: "
                f"{gdesc}; expected ERA5 months overlapping the GRACE months (download ERA5 for them)",
                paths=[*map(str, era5_files), str(path)], expected="ERA5 months overlapping the GRACE months",
                found=f"ERA5 {ym(r0)} .. {ym(r1)}, GRACE {c} {_cover(months) if len(months) else 'none'}")
        inside[c] = sel
        grace_p[c] = Period(sel[0], sel[-1], "data", key=f"data.grace.{c}", months=len(sel),
                            rule=f"the months {Path(str(path)).name} holds inside the record")

    split_rule = f"data.split.val_months={val_months}, data.split.gap_months={gap_months}"
    # the split of each centre alone: the earliest last training month bounds the statistics
    ends = {}
    for c, sel in inside.items():
        try:
            ends[c] = time_split(times, times.isin(sel), val_months=val_months, gap_months=gap_months).train_end
        except ValueError as err:
            if stats_period is None:
                raise InputFileError(
                    f"{grace[c][1]}: GRACE {c} has {len(sel)} months inside the record {ym(r0)} .. {ym(r1)}: too "
                    f"few to choose the statistics period from the data with {split_rule} ({err}); set "
                    "data.stats_period=[first,last] or lower data.split.val_months / data.split.gap_months",
                    paths=[str(grace[c][1])]) from None
    first = min(sel[0] for sel in inside.values())
    union = np.zeros(len(times), bool)
    for sel in inside.values():
        union |= times.isin(sel)
    try:
        split = time_split(times, union, val_months=val_months, gap_months=gap_months)
    except ValueError:
        split = None
    train = val = None
    if split is not None:
        train = Period(times[split.train[0]], times[split.train[-1]], "data", key="datamodule.val_months",
                       months=len(split.train),
                       rule=f"GRACE months of all centres before the gap and validation block ({split_rule}); "
                            "training recomputes it from the targets it trains on")
        if len(split.val):
            val = Period(times[split.val[0]], times[split.val[-1]], "data", key="datamodule.val_months",
                         months=len(split.val), rule=f"the last {val_months} GRACE months of all centres")

    if stats_period is None:
        last = times[min(ends.values())]
        by = min(ends, key=ends.get)
        stats = Period(first, last, "data", key="data.stats_period",
                       rule=f"first GRACE month .. last training month ({split_rule}; earliest of the centres: "
                            f"{by})", extra={"split": [int(val_months), int(gap_months)]})
    else:
        s0, s1 = parse_period("data.stats_period", stats_period)
        if s1 < r0 or s0 > r1:
            raise ConfigError(f"config key data.stats_period={_show(stats_period)}: expected months inside the record "
                              f"data.start .. data.end = {ym(r0)} .. {ym(r1)} ({record.source}); {era5_desc}")
        stats = Period(s0, s1, "config", key="data.stats_period")
        if ends and s1 > times[min(ends.values())]:
            LOGGER.warning("data.stats_period ends %s, after the last training month %s of the split %s: training "
                           "with that split will refuse the cube (its statistics would see validation months)",
                           ym(s1), ym(times[min(ends.values())]), split_rule)
    b0, b1 = parse_period("data.baseline", baseline)
    base = Period(b0, b1, "config", key="data.baseline")
    era5 = Period(cov0, cov1, "data", key="data.era5_dir", months=len(era5_times),
                  rule="the months every ERA5 variable covers")
    return Periods(record=record, era5=era5, grace=grace_p, stats=stats, baseline=base, train=train, validation=val)


# ------------------------------------------------------------------------------------- fingerprints, re-use
def resolved_spec(spec, periods: Periods):
    """``spec`` (a :class:`~gtws_dl.cube.build.CubeSpec`) with its periods as resolved: what the cube's
    fingerprint holds, so a period chosen from the data fingerprints as the same period given by its key."""
    return replace(spec, start=ym(periods.record.start), end=ym(periods.record.end),
                   stats_period=periods.stats.strings())


def as_last_time(spec, periods: Mapping | None):
    """``spec`` with the periods it leaves to the data as an earlier build chose them (its manifest's
    ``periods``), for the re-use check: the same inputs and keys choose the same periods. None when that build
    chose them differently (from a key, another split) or a given key is malformed (the build will say so)."""
    try:
        given = {k: None if getattr(spec, k) is None else ym(parse_month(f"data.{k}", getattr(spec, k)))
                 for k in ("start", "end")}
        stats = None if spec.stats_period is None else tuple(
            ym(t) for t in parse_period("data.stats_period", spec.stats_period))
    except ConfigError:
        return None
    periods = periods or {}
    rec, st = periods.get("record") or {}, periods.get("stats") or {}
    for k in ("start", "end"):
        if given[k] is None:
            if rec.get(f"{k}_from") != "data":
                return None
            given[k] = rec.get(k)
    if stats is None:
        if st.get("from") != "data" or st.get("split") != [int(spec.val_months), int(spec.gap_months)]:
            return None
        stats = (st.get("start"), st.get("end"))
    return replace(spec, start=given["start"], end=given["end"], stats_period=stats)
