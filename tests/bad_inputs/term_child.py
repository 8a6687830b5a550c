"""Child process of the SIGTERM tests: ``python term_child.py STAGE MARK OVERRIDE...`` runs ``gtws-dl STAGE`` (the
real command, so the real signal handling) with a hook that writes MARK and then waits, so the parent can send
SIGTERM at a known, bad moment:

- ``infer``: after the temp file of the first detrended product is written and before it is renamed;
- ``twin``: the same, for the first ``.nc`` file the twin renames into place;
- ``train``: in the first training step of the second epoch (``last.ckpt`` of the first epoch exists).
"""

import os
import sys
import time
from pathlib import Path

import torch

torch.set_num_threads(2)  # as tests/conftest.py: the same summation order as the reference run
stage, mark, overrides = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]


def hold(what: str) -> None:
    mark.write_text(what)
    time.sleep(600)  # SIGTERM arrives here


if stage in ("infer", "twin"):
    suffix = "_detrended_deseasonalized.nc" if stage == "infer" else ".nc"
    _replace = os.replace

    def hanging_replace(src, dst, *a, **k):
        if str(dst).endswith(suffix) and not mark.exists():
            hold(str(src))
        return _replace(src, dst, *a, **k)

    os.replace = hanging_replace
elif stage == "train":
    from gtws_dl.models.module import ReconstructionModule

    _step = ReconstructionModule.training_step

    def held_step(self, batch, batch_idx):
        if self.current_epoch == 1 and not mark.exists():
            hold(str(self.global_step))
        return _step(self, batch, batch_idx)

    ReconstructionModule.training_step = held_step

from gtws_dl.cli import main  # noqa: E402

sys.exit(main([stage, *overrides]))
