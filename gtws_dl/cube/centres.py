"""The GRACE centres checked against each other before a cube is built: the same scale and the same baseline
months. Each centre's file alone passes the reader's checks in these faults (a 10x unit label stays inside the
plausible range; a truncated release is re-referenced to the months it has)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gtws_dl.io.errors import input_error
from gtws_dl.io.mascon import BASELINE_MIN_FRACTION

#: Centres' TWSA spreads (5-95 % range over the baseline months and cells) must agree within this factor. The three
#: centres solve for the same mass change (the 30° twin's agree within 1.04x); a 10x (cm vs mm label) or 100x (m vs cm)
#: scale error is far outside, the centres' different smoothing is far inside.
CENTRE_SPREAD_FACTOR = 3.0


def check_centre_scales(spread: dict[str, float], paths: dict[str, Path]) -> None:
    """Refuse centres whose anomaly spreads (mm) differ by more than :data:`CENTRE_SPREAD_FACTOR`: one of them has
    the wrong scale or unit label (each alone passes the plausibility range). The odd one is the one farthest from
    the others' median (with two, from 100 mm, the middle of a GRACE grid's typical spread)."""
    ok = {c: v for c, v in spread.items() if np.isfinite(v) and v > 0}
    if len(ok) < 2 or max(ok.values()) <= CENTRE_SPREAD_FACTOR * min(ok.values()):
        return

    def distance(c: str) -> float:
        others = [v for k, v in ok.items() if k != c]
        ref = float(np.median(others)) if len(others) > 1 else 100.0
        return abs(np.log(ok[c] / ref))
    odd = max(ok, key=distance)
    rest = ", ".join(f"{c} {v:.3g} mm" for c, v in ok.items() if c != odd)
    raise input_error(
        [paths[odd]], "lwe_thickness",
        f"a spread of anomalies within {CENTRE_SPREAD_FACTOR:g}x of the other centres' ({rest})",
        f"{ok[odd]:.3g} mm for {odd} ({ok[odd] / np.median([v for c, v in ok.items() if c != odd]):.3g}x)",
        hint="the file's values or its units label are off by a factor (cm vs mm: 10x); fix the units attribute")


def check_centre_baselines(used: dict[str, set[str]], paths: dict[str, Path], baseline: tuple[str, str]) -> None:
    """Refuse centres re-referenced to different months: each must hold at least
    :data:`~gtws_dl.io.mascon.BASELINE_MIN_FRACTION` of the baseline months any centre holds (a truncated download
    or a GRACE-FO-era file would put its anomalies on another reference than the others and the manifest)."""
    union = set().union(*used.values()) if used else set()
    short = {c: m for c, m in used.items() if len(m) < BASELINE_MIN_FRACTION * len(union)}
    if len(used) < 2 or not short:
        return
    c = min(short, key=lambda k: len(short[k]))
    months = sorted(short[c])
    raise input_error(
        [paths[c]], "lwe_thickness",
        f"the baseline months {baseline[0]} .. {baseline[1]} the other centres hold ({len(union)} months)",
        f"{len(months)} of them ({months[0]} .. {months[-1]})" if months else "none of them",
        hint="its anomalies would be re-referenced to another period than the other centres'; use the complete "
             "release of this centre, or a baseline every file covers (data.baseline=[YYYY-MM,YYYY-MM])")
