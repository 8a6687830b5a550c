"""``products/manifest.json``: what a products folder holds, where each file came from, and its checksum.

Written **last** (after every NetCDF, Zarr and xlsx file is in place) and atomically, so a folder whose manifest
is missing or disagrees with its files is an unfinished or tampered publication. Layout::

    {"format": "gtws-dl products", "manifest_version": 1, "code_version": "...", "updated": "...",
     "files": {"gtws_dl_twsa_csr.nc": {"kind": "netcdf", "bytes": 123, "sha256": "...", "run": "<id>"}, ...},
     "runs": {"<id>": {"checkpoint": ..., "checkpoint_sha256": ..., "cube_dir": ..., "cube_fingerprint": ...,
                       "cube_stats_period": ..., "reconstruction": ..., "config": {...}, "code_version": ...,
                       "created": ...}}}

Several ``infer.py`` runs (one per target) publish into one folder: entries of files that a run did not rewrite
keep their earlier provenance. Pure stdlib + the file system (no torch), as the rest of ``post/``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

from gtws_dl import __version__
from gtws_dl.hashing import sha256_json, sha256_path
from gtws_dl.lock import write_text_atomic

LOGGER = logging.getLogger(__name__)
MANIFEST = "manifest.json"
PREVIOUS = "manifest.previous.json"  # the last manifest, set aside while a publication is in progress
MANIFEST_VERSION = 1
PRODUCT_SUFFIXES = {".nc": "netcdf", ".zarr": "zarr", ".xlsx": "xlsx"}


class ProductsManifestError(ValueError):
    """A products folder whose manifest is missing, unreadable, or disagrees with its files."""


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def product_files(products_dir: str | os.PathLike) -> list[Path]:
    """Product entries of a folder (``*.nc``, ``*.zarr``, ``*.xlsx``), temp files excluded, sorted."""
    d = Path(products_dir)
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if p.suffix in PRODUCT_SUFFIXES and ".tmp-" not in p.name
                  and ".old-" not in p.name)


def set_aside(products_dir: str | os.PathLike) -> None:
    """Mark a publication as in progress: ``manifest.json`` → ``manifest.previous.json`` (atomic rename)."""
    d = Path(products_dir)
    if (d / MANIFEST).exists():
        os.replace(d / MANIFEST, d / PREVIOUS)


def _load(path: Path) -> dict:
    try:
        m = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ProductsManifestError(f"{path}: unreadable products manifest ({err}); re-run infer.py") from None
    if not isinstance(m, dict) or m.get("format") != "gtws-dl products" or not isinstance(m.get("files"), dict):
        raise ProductsManifestError(f"{path}: not a gtws-dl products manifest; re-run infer.py")
    return m


def write_products_manifest(products_dir: str | os.PathLike, *, written: Mapping[str, os.PathLike] | None = None,
                            checkpoint: str | os.PathLike | None = None, cube_manifest: Mapping | None = None,
                            reconstruction: str | os.PathLike | None = None, config: Mapping | None = None,
                            extra: Mapping | None = None) -> Path:
    """Checksum every product in ``products_dir`` and write ``manifest.json`` last, atomically; returns its path.

    ``written`` are the product paths this run wrote (``publish`` returns them; Zarr copies beside each ``.nc``
    are included automatically); other files keep the provenance the previous manifest gave them. ``extra``
    (e.g. an update's months) is added to this run's record.
    """
    d = Path(products_dir)
    prev: dict = {"files": {}, "runs": {}}
    for name in (MANIFEST, PREVIOUS):
        if (d / name).exists():
            try:
                prev = _load(d / name)
            except ProductsManifestError:
                LOGGER.warning("ignoring unreadable %s", d / name)
            break
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    cm = dict(cube_manifest or {})
    run = {
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "checkpoint_sha256": sha256_path(checkpoint) if checkpoint is not None and Path(checkpoint).is_file() else None,
        "cube_fingerprint": cm.get("fingerprint"),
        "cube_stats_period": (cm.get("stats") or {}).get("period"),
        "cube_inputs": cm.get("inputs"),
        "reconstruction": None if reconstruction is None else str(reconstruction),
        "config": dict(config or {}),
        "code_version": __version__,
        "created": now,
        **dict(extra or {}),
    }
    run_id = sha256_json(run, length=16)
    mine: set[str] = set()
    for p in (written or {}).values():
        p = Path(p)
        mine.add(p.name)
        if p.suffix == ".nc":
            mine.add(p.with_suffix(".zarr").name)
    files: dict[str, dict] = {}
    for p in product_files(d):
        digest = sha256_path(p)
        old = prev["files"].get(p.name, {})
        # a file this run wrote, or one that changed since the last manifest (the workbook is refreshed from
        # every product), belongs to this run; the others keep their earlier provenance
        owner = run_id if (p.name in mine or old.get("sha256") != digest) else old.get("run")
        files[p.name] = {"kind": PRODUCT_SUFFIXES[p.suffix], "bytes": _size(p), "sha256": digest, "run": owner}
    runs = {k: v for k, v in prev.get("runs", {}).items() if any(f["run"] == k for f in files.values())}
    runs[run_id] = run
    manifest = {"format": "gtws-dl products", "manifest_version": MANIFEST_VERSION, "code_version": __version__,
                "updated": now, "files": files, "runs": runs}
    path = d / MANIFEST
    write_text_atomic(path, json.dumps(manifest, indent=1, default=str))
    (d / PREVIOUS).unlink(missing_ok=True)
    LOGGER.info("wrote %s (%d products)", path, len(files))
    return path


def check_product(path: str | os.PathLike, *, require: bool = True, checksum: bool = True) -> dict | None:
    """Verify one product against its folder's manifest; returns its entry (None when absent and not required).

    Raises :class:`ProductsManifestError` when the manifest is missing (``require``), lacks the file, or records
    another size or checksum.
    """
    p = Path(path)
    mpath = p.parent / MANIFEST
    if not mpath.exists():
        if require:
            raise ProductsManifestError(
                f"{p.parent}: no {MANIFEST} — the products are unfinished (a publication was interrupted) or were "
                "not written by infer.py; re-run infer.py with the same command"
            )
        return None
    entry = _load(mpath)["files"].get(p.name)
    if entry is None:
        raise ProductsManifestError(f"{p}: not listed in {mpath}; it was not written by the publication that "
                                    "wrote the manifest: re-run infer.py")
    size = _size(p)
    if size != entry["bytes"] or (checksum and sha256_path(p) != entry["sha256"]):
        raise ProductsManifestError(
            f"{p}: {'size' if size != entry['bytes'] else 'sha256 checksum'} differs from {mpath} (the file changed "
            "after publication or its copy is damaged); re-run infer.py or restore the file"
        )
    return entry


def check_products(products_dir: str | os.PathLike) -> dict:
    """Verify a whole products folder: manifest present, every listed file present and intact, none unlisted."""
    d = Path(products_dir)
    if not (d / MANIFEST).exists():
        check_product(d / "x", require=True)  # raises the 'no manifest' error
    m = _load(d / MANIFEST)
    for name in m["files"]:
        if not (d / name).exists():
            raise ProductsManifestError(f"{d / name}: listed in {d / MANIFEST} but missing; re-run infer.py")
        check_product(d / name)
    extra = [p.name for p in product_files(d) if p.name not in m["files"]]
    if extra:
        raise ProductsManifestError(f"{d}: products {extra} are not in {MANIFEST} (written after it, or by an "
                                    "interrupted run); re-run infer.py")
    return m
