"""Pre-flight checks before large writes: is the output writable, and is there room for it?

Both run *before* anything is written, so a run that cannot finish refuses at once instead of failing an hour
later with a half-written store. Estimates are upper bounds (uncompressed float32 plus a margin): compression
only makes the real footprint smaller.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOGGER = logging.getLogger(__name__)

MARGIN = 1.10  # 10 % on top of the uncompressed size: Zarr/NetCDF metadata, temp copies of small files
MIN_FREE_BYTES = 64 << 20  # never start a write with less than this free, whatever the estimate


class DiskSpaceError(OSError):
    """The file system holding an output has less free space than the write needs."""


class OutputNotWritableError(OSError):
    """An output directory cannot be created or written to."""


def human(n: float) -> str:
    """Bytes as a short human string (``1.5 GB``)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} TB"


def _existing_ancestor(path: Path) -> Path:
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def float32_bytes(*shape: int) -> int:
    """Uncompressed size of a float32 array of ``shape``."""
    n = 4
    for s in shape:
        n *= int(s)
    return n


def check_free_space(path: str | os.PathLike, need_bytes: float, *, what: str, config_key: str | None = None) -> int:
    """Refuse (:class:`DiskSpaceError`) when the file system of ``path`` has less free space than needed.

    ``path`` may not exist yet; its nearest existing ancestor is measured. Logs the estimate and the free
    space; returns the free bytes.
    """
    need = int(max(need_bytes * MARGIN, MIN_FREE_BYTES))
    where = _existing_ancestor(Path(path))
    free = shutil.disk_usage(where).free
    LOGGER.info("%s: needs up to %s (estimate), %s free on %s", what, human(need), human(free), where)
    if free < need:
        key = f" or point {config_key} at a larger disk" if config_key else " or write elsewhere"
        raise DiskSpaceError(
            f"{what} needs up to {human(need)} (estimate) but only {human(free)} is free on the file system of "
            f"{where}; free some space{key}"
        )
    return free


def check_writable(path: str | os.PathLike, *, what: str, config_key: str | None = None) -> Path:
    """Refuse (:class:`OutputNotWritableError`) an output directory that cannot be created or written.

    Creates nothing: checks that ``path`` is a directory (or that its nearest existing ancestor is one) and that
    a probe file can be created there and removed again (a real write, so read-only mounts and ACLs are caught
    where :func:`os.access` would not be).
    """
    path = Path(os.path.abspath(path))
    key = f" (set {config_key})" if config_key else ""
    if path.exists() and not path.is_dir():
        raise OutputNotWritableError(
            f"{what} {path} exists but is a file, not a directory; remove it or choose another path{key}"
        )
    anc = _existing_ancestor(path)
    if not anc.is_dir():
        raise OutputNotWritableError(
            f"{what} {path} cannot be created: {anc} is a file, not a directory; choose another path{key}"
        )
    try:
        fd, probe = tempfile.mkstemp(prefix=".gtws-dl-write-probe-", dir=anc)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OutputNotWritableError(
            f"{what} {path} is not writable ({anc}: {err.strerror or err}); fix its permissions or choose "
            f"another path{key}"
        ) from err
    return path


def _enospc(err: BaseException | None) -> bool:
    """Whether ``err`` or an exception it was raised from is an ``OSError`` with errno ENOSPC (disk full)."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            return True
        err = err.__cause__ or err.__context__
    return False


def free_bytes(path: str | os.PathLike) -> int:
    """Free bytes on the file system of ``path`` (its nearest existing ancestor); a huge number if unknown."""
    try:
        return shutil.disk_usage(_existing_ancestor(Path(path))).free
    except OSError:
        return 1 << 62


def full_file_system(*paths: str | os.PathLike | None) -> tuple[Path, int] | None:
    """(the nearest existing ancestor, its free bytes) of the first of ``paths`` on a file system with less than
    :data:`MIN_FREE_BYTES` free, or None. HDF5 (so netCDF4) reports a full disk without errno ENOSPC: as
    ``RuntimeError: NetCDF: HDF error`` while writing, or as ``PermissionError`` when it creates a file; a failed
    write on a file system this full is taken for a full disk."""
    for path in paths:
        if path is None:
            continue
        free = free_bytes(path)
        if free < MIN_FREE_BYTES:
            return _existing_ancestor(Path(path)), free
    return None


def disk_space_error(err: BaseException, path: str | os.PathLike, *, what: str,
                     config_key: str | None = None) -> DiskSpaceError | None:
    """The :class:`DiskSpaceError` that ``err`` (raised while writing ``path``) stands for, or None: an ``OSError``
    ENOSPC anywhere in its chain, or an ``OSError``/``RuntimeError`` without it on a file system with less than
    :data:`MIN_FREE_BYTES` free (:func:`full_file_system`)."""
    key = f" or point {config_key} at a larger disk" if config_key else " or write elsewhere"
    where = _existing_ancestor(Path(path).parent)
    if _enospc(err):
        free = shutil.disk_usage(where).free if where.exists() else 0
        return DiskSpaceError(
            f"{what} {path}: the disk filled up while writing (No space left on device; {human(free)} free on the "
            f"file system of {where}); free some space{key} and re-run the same command"
        )
    full = full_file_system(path) if isinstance(err, (OSError, RuntimeError)) else None
    if full is None:
        return None
    cause = " ".join(f"{type(err).__name__}: {err}".split())[:200]
    return DiskSpaceError(
        f"{what} {path}: the write failed ({cause}) with only {human(full[1])} free on the file system of "
        f"{full[0]}: the disk is full; free some space{key} and re-run the same command"
    )


@contextmanager
def disk_full_is_an_error(path: str | os.PathLike, *, what: str, config_key: str | None = None) -> Iterator[None]:
    """``with disk_full_is_an_error(path, what=...):`` around a write loop: a full disk met by Zarr/NetCDF/numpy
    while writing (after the pre-flight estimate), with errno ENOSPC or not (:func:`disk_space_error`), becomes a
    :class:`DiskSpaceError` naming ``path`` and the fix; other errors pass unchanged."""
    try:
        yield
    except DiskSpaceError:
        raise
    except Exception as err:
        mapped = disk_space_error(err, path, what=what, config_key=config_key)
        if mapped is None:
            raise
        raise mapped from err
