"""The one exception every reader raises for a bad input file, and helpers that format it.

A message always names the file(s), the variable, what was expected and what was found, e.g.::

    era5_2001.nc: variable 'tp': expected units one of ['m', 'm of water equivalent'];
    found 'furlongs'

and, for a missing variable, the names that *are* available.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

PathLike = str | os.PathLike


class InputFileError(ValueError):
    """A file (or set of files) that cannot be read into the canonical layout.

    Attributes
    ----------
    paths : tuple of str
        The offending file(s).
    variable : str or None
        The variable concerned (``None`` for file-level problems).
    expected, found : str or None
        What the reader needed and what it saw.
    """

    def __init__(
        self,
        message: str,
        *,
        paths: Sequence[PathLike] = (),
        variable: str | None = None,
        expected: str | None = None,
        found: str | None = None,
    ) -> None:
        super().__init__(message)
        self.paths = tuple(str(p) for p in paths)
        self.variable = variable
        self.expected = expected
        self.found = found


def _names(paths: PathLike | Iterable[PathLike] | None) -> list[str]:
    if paths is None:
        return []
    if isinstance(paths, str | os.PathLike):
        return [str(paths)]
    return [str(p) for p in paths]


def describe_files(paths: PathLike | Iterable[PathLike] | None, limit: int = 4) -> str:
    """Short, readable list of file paths for a message (``a.nc, b.nc and 3 more``)."""
    names = _names(paths)
    if not names:
        return "<no file>"
    shown = ", ".join(names[:limit])
    if len(names) > limit:
        shown += f" and {len(names) - limit} more"
    return shown


def input_error(
    paths: PathLike | Iterable[PathLike] | None,
    variable: str | None,
    expected: str,
    found: str,
    *,
    available: Iterable[str] | None = None,
    hint: str | None = None,
) -> InputFileError:
    """Build (not raise) an :class:`InputFileError` with the standard message layout.

    ``"<files>: variable '<var>': expected <expected>; found <found>. Available: [...]. <hint>"``
    """
    names = _names(paths)
    where = describe_files(names)
    what = f"variable {variable!r}: " if variable else ""
    msg = f"{where}: {what}expected {expected}; found {found}"
    if available is not None:
        msg += f". Available variables: {sorted(str(a) for a in available)}"
    if hint:
        msg += f". {hint}"
    return InputFileError(msg, paths=names, variable=variable, expected=expected, found=found)


def missing_variable(
    paths: PathLike | Iterable[PathLike] | None, variable: str, available: Iterable[str]
) -> InputFileError:
    """Error for a requested variable that no file holds."""
    return input_error(paths, variable, "the variable to be present", "it is missing", available=available)


def file_name(path: PathLike) -> str:
    """Just the base name, for compact messages inside longer lists."""
    return Path(path).name
