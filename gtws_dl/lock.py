"""A lock file that refuses a second run writing to the same output, and recovers from killed runs."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path


class OutputLockedError(RuntimeError):
    """Another live process is writing to the same output."""


class InputsInUseError(RuntimeError):
    """A write would replace files that a finished product (e.g. a cube) was built from."""


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host (used to recognise files of killed writers)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


class OutputLock:
    """``with OutputLock(path):`` — exclusive writer of ``path`` (lock file ``<path>.lock``).

    A lock left by a process that no longer runs on this host (killed, crashed) is taken over.
    """

    def __init__(self, path: str | Path) -> None:
        self.lock = Path(str(path) + ".lock")

    def __enter__(self) -> OutputLock:
        self.lock.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(2):
            try:
                fd = os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    other = json.loads(self.lock.read_text() or "{}")
                except (OSError, ValueError):
                    other = {}
                if other.get("host") == me["host"] and not pid_alive(int(other.get("pid", -1))):
                    self.lock.unlink(missing_ok=True)  # stale: its writer is gone
                    continue
                raise OutputLockedError(
                    f"{self.lock.with_suffix('')} is being written by process {other.get('pid')} on "
                    f"{other.get('host')}; wait for it to finish or remove {self.lock} if that run is dead"
                ) from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            return self
        raise OutputLockedError(f"could not take {self.lock}")

    def __exit__(self, *exc) -> None:
        self.lock.unlink(missing_ok=True)


def remove_stale_temps(directory: Path, prefix: str = "", *, mine: bool = False) -> list[Path]:
    """Remove ``<name>.tmp-<pid>`` / ``.old-<pid>`` entries left in ``directory`` by processes that are gone.

    A SIGKILLed writer cannot clean up after itself; its temp files must not pile up or be mistaken for data.
    Entries of live processes (a concurrent writer) are left alone; ``mine=True`` also removes this process's own
    (its cleanup after an interrupt or a failure).
    """
    removed = []
    if not directory.is_dir():
        return removed
    for p in directory.iterdir():
        if not p.name.startswith(prefix):
            continue
        for tag in (".tmp-", ".old-"):
            head, sep, pid = p.name.rpartition(tag)
            own = pid.isdigit() and int(pid) == os.getpid()
            if sep and head and pid.isdigit() and (mine if own else not pid_alive(int(pid))):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
                removed.append(p)
                break
    return removed


def remove_tree(path: Path, *, quiet_s: float = 0.2, timeout_s: float = 30.0) -> None:
    """Remove a temp folder after a failed write, including chunks that land after the failure.

    Zarr v3 writes chunks as concurrent tasks and re-raises the first error without cancelling the others
    (measured: a store removed just after an ``ENOSPC`` was back 0.3 s later in 30 of 30 tries). So: wait for
    zarr's pending tasks, remove, and remove again until ``path`` stays absent for ``quiet_s`` seconds.
    Nothing to wait for when ``path`` does not exist (the usual case after a successful rename).
    """
    path = Path(path)
    if not path.exists():
        return
    _settle_zarr_writes(timeout_s)
    deadline = time.monotonic() + timeout_s
    quiet_since = None
    while time.monotonic() < deadline:
        if path.exists():
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            return
        time.sleep(0.02)


def _settle_zarr_writes(timeout_s: float) -> None:
    """Wait (up to ``timeout_s``) for the tasks still running on zarr's I/O event loop, if zarr is in use."""
    if "zarr.core.sync" not in sys.modules:
        return
    import asyncio

    loop = sys.modules["zarr.core.sync"].loop[0]
    if loop is None or not loop.is_running():
        return

    async def drain() -> None:
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if others:
            await asyncio.wait(others, timeout=timeout_s)

    try:
        asyncio.run_coroutine_threadsafe(drain(), loop).result(timeout_s + 1)
    except Exception:  # a cleanup helper: the polling in remove_tree still removes late chunks
        pass


def remove_stale_temps_under(*directories: Path, prefix: str = "", mine: bool = False) -> list[Path]:
    """:func:`remove_stale_temps` in each of ``directories`` (missing ones are skipped)."""
    return [p for d in directories for p in remove_stale_temps(Path(d), prefix, mine=mine)]


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``<path>.tmp-<pid>`` then rename it over ``path``: readers see the old or the new file."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
