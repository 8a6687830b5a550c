"""The twin Earth: a synthetic world that writes ERA5-, GRACE- and vegetation-like files plus the truth.

Nothing outside this package imports it except its command (``python -m gtws_dl.twin``) and tests.
"""

from gtws_dl.twin.config import TwinConfig, TwinConfigError
from gtws_dl.twin.pipeline import generate

__all__ = ["TwinConfig", "TwinConfigError", "generate"]
