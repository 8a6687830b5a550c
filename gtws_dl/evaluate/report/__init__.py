"""Evaluation report of the gtws-dl products: ``report.md`` + PNG figures + ``numbers.json``.

``python -m gtws_dl.evaluate.report paths.output_dir=outputs/demo [report.external_sle=x.csv]
[report.basins=b.geojson] [report.gauges=g.csv] [report.published.gtws_mlrec=f.nc ...]``
(config ``conf/report.yaml``) writes ``<output_dir>/report/`` atomically. Sections, after GTWS-MLrec's
evaluation (Yin et al. 2023, ESSD 15, 5597), one module each over one :class:`~.context.Context`
(products, cube, truth, loaded once by :func:`~.context.load_context`):

1. ``maps`` — skill maps per centre vs GRACE and vs the twin truth, trend and seasonal amplitude;
2. ``regional`` — regional series with GRACE and truth;
3. ``mass`` — global land mass as sea-level equivalent, land–ocean mass budget, unforced trends;
4. ``basins`` — basin water balance dS/dt vs P − E − R (P, E: the cube's ERA5 channels);
5. ``discharge`` — gauges, or the twin basin runoff as a proxy;
6. ``elnino`` — El Niño − La Niña composites (index from the cube's ERA5 ``skt``);
7. ``published`` — comparison with published reconstructions;
8. ``truth_skill`` — the evaluation protocol's table against the twin truth.

Skill everywhere is that of :mod:`gtws_dl.evaluate.protocol`. A section whose input is missing is skipped with
a line saying why; one that fails writes the error into report.md (and the log) — nothing is skipped silently.
"""

from gtws_dl.evaluate.report.build import SECTIONS, build_report, print_key_numbers

__all__ = ["SECTIONS", "build_report", "print_key_numbers"]
