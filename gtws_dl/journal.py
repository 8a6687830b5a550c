"""All-or-nothing changes to a set of output folders: a hard-link snapshot taken before, restored after a crash.

An update (:mod:`gtws_dl.update`) changes the cube, the reconstruction and the products together. Before the
first write, :meth:`Journal.begin` hard-links every file of those folders into a snapshot beside each
(``.<name>.snapshot``; no data is copied) and writes the record. Every writer of gtws-dl replaces files instead of modifying them in place — Zarr's local
store writes each chunk to a temporary file and renames it (zarr ≥ 3.1), products and manifests are written to
a temporary file and renamed — so a snapshot link keeps the old bytes whatever happens to the live name.

:meth:`Journal.commit` (the last step) drops the snapshot. If the process dies before, the next run calls
:meth:`Journal.recover`, which puts every snapshotted folder back exactly as it was (files created since are
removed), and can then redo the change from the same starting point: the result equals an uninterrupted run.
Recovery itself is restartable (each folder is swapped by renames).

Chosen over a transactional store (Icechunk) because every reader of the cube, the reconstruction and the
products keeps opening plain Zarr/NetCDF paths; the cost is one ``link()`` per file (measured in the update
note: milliseconds for the demo's folders).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from gtws_dl.lock import write_text_atomic

LOGGER = logging.getLogger(__name__)


class JournalError(RuntimeError):
    """A journal that cannot be used (another kind of change pending, a snapshot that was tampered with)."""


class Journal:
    """Snapshot/restore of folders (and single files) for one named change (``kind``), recorded in ``record``.

    The snapshot of a path ``P`` is ``P.parent/.P.name.snapshot`` (the same file system, so links work)."""

    def __init__(self, record: str | Path, kind: str) -> None:
        self.record = Path(record)
        self.kind = kind

    @staticmethod
    def snapshot_of(path: str | Path) -> Path:
        path = Path(path)
        return path.with_name(f".{path.name}.snapshot")

    # ------------------------------------------------------------------ state
    def pending(self) -> dict | None:
        """The record of an unfinished change (``{"kind", "paths", "info"}``), None when there is none."""
        if not self.record.exists():
            return None
        try:
            return json.loads(self.record.read_text())
        except (OSError, ValueError) as err:
            raise JournalError(f"{self.record}: unreadable journal ({err}); remove it only if every folder it "
                               "lists is known to be intact") from None

    def begin(self, paths: Iterable[str | Path], info: dict | None = None) -> None:
        """Snapshot ``paths`` (folders or files; absent ones are recorded as absent), then write the record.

        Refuses (:class:`JournalError`) while another change is pending: :meth:`recover` it first."""
        if self.pending() is not None:
            raise JournalError(f"{self.record}: a change is already pending; recover() it first")
        entries = []
        for p in paths:
            p = Path(p).resolve()
            snap = self.snapshot_of(p)
            remove(snap)  # left by a begin() that never wrote its record
            entries.append({"path": str(p), "existed": p.exists()})
            if p.exists():
                link_tree(p, snap)
        self.record.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.record, json.dumps({"kind": self.kind, "paths": entries, "info": info or {}},
                                                  indent=1))

    def recover(self) -> dict | None:
        """Restore every snapshotted path of a pending change; returns its record (None: nothing pending)."""
        rec = self.pending()
        if rec is None:
            return None
        if rec.get("kind") != self.kind:
            raise JournalError(f"{self.record}: a pending {rec.get('kind')!r} change, not {self.kind!r}; run that "
                               "command again to finish it")
        for entry in rec["paths"]:
            live = Path(entry["path"])
            snap = self.snapshot_of(live)
            trash = live.with_name(f"{live.name}.rollback-{os.getpid()}")
            if entry["existed"]:
                if not snap.exists():
                    if live.exists():  # swapped back by an earlier, interrupted recover(): done for this path
                        continue
                    raise JournalError(f"{self.record}: the snapshot {snap} of {live} is missing; it cannot be "
                                       "restored")
                if live.exists():
                    os.replace(live, trash)
                os.replace(snap, live)
            elif live.exists():
                os.replace(live, trash)
            remove(trash)
        LOGGER.warning("an interrupted %s was rolled back (%d paths restored as they were before it; %s)",
                       self.kind, len(rec["paths"]), self.record)
        self.record.unlink(missing_ok=True)
        return rec

    def commit(self) -> None:
        """The change is complete: drop the record first (the commit point), then the snapshots."""
        rec = self.pending() or {"paths": []}
        self.record.unlink(missing_ok=True)
        for entry in rec["paths"]:
            remove(self.snapshot_of(entry["path"]))


def exchange(a: str | Path, b: str | Path) -> None:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``): readers see one or the other, never
    neither. Where the system cannot, two renames (a moment without ``b``, covered by the journal)."""
    import ctypes

    a, b = os.fsencode(str(a)), os.fsencode(str(b))
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        fn = None
    if fn is not None:
        at_fdcwd, rename_exchange = -100, 2
        if fn(at_fdcwd, a, at_fdcwd, b, rename_exchange) == 0:
            return
    tmp = b + b".exchange"
    os.replace(b, tmp)
    os.replace(a, b)
    os.replace(tmp, a)


def link_tree(src: Path, dst: Path) -> None:
    """Hard-link ``src`` (a file or a folder tree) to ``dst``; copies where the file system cannot link."""
    if src.is_file():
        dst.parent.mkdir(parents=True, exist_ok=True)
        _link(src, dst)
        return
    for dirpath, _, files in os.walk(src):
        d = dst / Path(dirpath).relative_to(src)
        d.mkdir(parents=True, exist_ok=True)
        for f in files:
            _link(Path(dirpath) / f, d / f)


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # e.g. a file system without hard links: a copy keeps the same guarantee, slower
        shutil.copy2(src, dst)


def remove(path: Path) -> None:
    """Remove a file or a folder tree (nothing when absent)."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()
