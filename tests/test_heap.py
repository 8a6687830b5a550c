"""Handing memory back: glibc's arenas capped for the reader threads (measured in ``bench/area.py``)."""

from __future__ import annotations

import sys

import pytest

from gtws_dl.heap import limit_arenas

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")


def test_limit_arenas_is_set_unless_the_environment_says_otherwise(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_arenas() is False  # the user's setting rules
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    assert limit_arenas() is True
