"""gtws-dl: deep-learning reconstruction of terrestrial water storage anomalies (TWSA) from 1940."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("gtws-dl")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"
