"""Readers and harmonisation: downloaded files → canonical xarray objects.

Canonical layout: dims ``(time, lat, lon)``, ``time`` month start, ``lat`` ascending,
``lon`` −180..180 ascending, float32, ``units`` attribute canonical. Bad input raises
:class:`gtws_dl.io.errors.InputFileError` (a ``ValueError``) naming the file, the variable,
what was expected and what was found. Layouts: ``docs/FORMATS.md``.
"""

from gtws_dl.io.errors import InputFileError

__all__ = ["InputFileError"]
