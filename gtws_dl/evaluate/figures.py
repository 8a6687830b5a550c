"""Matplotlib (Agg) figure helpers for the evaluation report: map panels, series panels, bar charts.

Every figure has a title, axis labels with units and a colorbar per map panel; files are PNG written
atomically (``<name>.tmp-<pid>.png`` then :func:`os.replace`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


@dataclass
class MapPanel:
    """One map: ``data`` (nlat, nlon), colour limits and the colorbar label (with units)."""

    title: str
    data: np.ndarray
    label: str
    cmap: str = "viridis"
    vmin: float | None = None
    vmax: float | None = None
    points: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # lon, lat, value: scatter instead of map


@dataclass
class Line:
    x: np.ndarray
    y: np.ndarray
    label: str
    kw: dict = field(default_factory=dict)


@dataclass
class SeriesPanel:
    title: str
    ylabel: str
    lines: list[Line]
    hline: float | None = None


def _save(fig, path: Path, dpi: int) -> Path:
    path = Path(path)
    tmp = path.with_name(f"{path.stem}.tmp-{os.getpid()}.png")
    fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def symmetric_limit(*arrays: np.ndarray, q: float = 98.0) -> float:
    """The ``q``-th percentile of |values| (finite), for symmetric colour scales; 1 if nothing is finite."""
    vals = np.concatenate([np.abs(np.asarray(a, float)[np.isfinite(a)]).ravel() for a in arrays] + [np.zeros(0)])
    v = float(np.percentile(vals, q)) if vals.size else 1.0
    return v if v > 0 else 1.0


def map_grid(panels: Sequence[MapPanel], lon: np.ndarray, lat: np.ndarray, path: Path, *, suptitle: str,
             land: np.ndarray | None = None, ncols: int = 3, dpi: int = 110) -> Path:
    """Equirectangular maps of cell-centred fields on a regular grid, one colorbar per panel."""
    n = len(panels)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 2.9 * nrows + 0.5), squeeze=False)
    dlon = float(np.diff(lon).mean()) if len(lon) > 1 else 1.0
    dlat = float(np.diff(lat).mean()) if len(lat) > 1 else 1.0
    lon_e = np.concatenate([lon - dlon / 2, [lon[-1] + dlon / 2]])
    lat_e = np.concatenate([lat - dlat / 2, [lat[-1] + dlat / 2]])
    for ax, p in zip(axes.ravel(), panels, strict=False):
        if land is not None:  # grey land backdrop shows where the metric is undefined
            ax.pcolormesh(lon_e, lat_e, np.where(land, 1.0, np.nan), cmap="Greys", vmin=0, vmax=4, shading="flat")
        if p.points is not None:
            x, y, v = p.points
            im = ax.scatter(x, y, c=v, cmap=p.cmap, vmin=p.vmin, vmax=p.vmax, s=28, edgecolors="k", linewidths=0.4)
        else:
            im = ax.pcolormesh(lon_e, lat_e, np.ma.masked_invalid(p.data), cmap=p.cmap, vmin=p.vmin, vmax=p.vmax,
                               shading="flat")
        ax.set_title(p.title, fontsize=9)
        ax.set_xlim(lon_e[0], lon_e[-1])
        ax.set_ylim(max(lat_e[0], -90), min(lat_e[-1], 90))
        ax.set_aspect("equal")
        ax.tick_params(labelsize=7)
        ax.set_xlabel("longitude (°E)", fontsize=7)
        ax.set_ylabel("latitude (°N)", fontsize=7)
        cb = fig.colorbar(im, ax=ax, shrink=0.85, pad=0.02)
        cb.set_label(p.label, fontsize=8)
        cb.ax.tick_params(labelsize=7)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    return _save(fig, path, dpi)


def series_grid(panels: Sequence[SeriesPanel], path: Path, *, suptitle: str, ncols: int = 3,
                dpi: int = 110, width: float = 5.2, height: float = 2.6) -> Path:
    """Time-series panels sharing a legend (the first panel's)."""
    n = len(panels)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows + 0.6), squeeze=False)
    for ax, p in zip(axes.ravel(), panels, strict=False):
        for ln in p.lines:
            ax.plot(ln.x, ln.y, label=ln.label, **{"lw": 0.8, **ln.kw})
        if p.hline is not None:
            ax.axhline(p.hline, color="0.5", lw=0.5)
        ax.set_title(p.title, fontsize=9)
        ax.set_ylabel(p.ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3, lw=0.4)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=8, frameon=False)
    fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout(rect=(0, 0.05 if handles else 0, 1, 1))
    return _save(fig, path, dpi)


def bar_chart(names: Sequence[str], groups: dict[str, Sequence[float]], path: Path, *, title: str, ylabel: str,
              ylim: tuple[float, float] | None = (-1, 1), dpi: int = 110) -> Path:
    """Grouped bars: one group per name, one bar per key of ``groups`` (e.g. per centre)."""
    names = list(names)
    k = max(1, len(groups))
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(min(13.0, max(6.0, 0.12 * len(names) * (k + 1) + 2)), 3.8))
    for j, (g, vals) in enumerate(groups.items()):
        ax.bar(x + (j - (k - 1) / 2) * 0.8 / k, np.asarray(vals, float), width=0.8 / k, label=g)
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_title(title, fontsize=10)
    ax.axhline(0, color="0.3", lw=0.6)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(axis="y", alpha=0.3)
    if len(groups) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path, dpi)
