"""The predictor and target cube: :mod:`~gtws_dl.cube.build` writes it, :mod:`~gtws_dl.cube.store` reads it."""
