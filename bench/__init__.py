"""Performance benchmarks of gtws-dl: ``python -m bench.run [--scale N] [--out BENCHMARKS.md]``.

Every benchmark reports a *ratio* of two times (or memories) measured in the same run on the same machine, so
numbers from noisy shared machines stay comparable. Modules:

- :mod:`bench.cubes` synthetic cubes (through :class:`gtws_dl.cube.writer.CubeWriter`) and modules built like training.
- :mod:`bench.inference` reconstruction vs. the Zarr read floor, FLOP efficiency, scaling, bounded memory.
- :mod:`bench.loader` training-step time from Zarr vs. from memory, and the cube-chunking study.
- :mod:`bench.report` machine description and the markdown report.
"""
