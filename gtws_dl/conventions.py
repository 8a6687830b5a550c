"""Names and periods the whole package shares, defined once (floor 0: imports nothing of the package).

``CENTRES``  the GRACE/GRACE-FO mascon solutions, in product order: JPL, CSR (UT Austin), GSFC (NASA Goddard).
``BASELINE`` the months (inclusive) whose mean is the zero of every TWSA series: 2004-01..2009-12, the
             baseline of the JPL/CSR/GSFC mascon releases and of GTWS-MLrec.
"""

from __future__ import annotations

CENTRES: tuple[str, ...] = ("jpl", "csr", "gsfc")
BASELINE: tuple[str, str] = ("2004-01", "2009-12")
