"""Child process of the kill/resume tests: ``python infer_child.py OUT CUBE CKPT [SLOW_S] [COUNT_FILE] [PUBLISH_MARK]``.

Runs the real :func:`gtws_dl.inference.infer` on the synthetic cube. Test hooks (monkeypatched here, in the child
only): every forward batch appends a line to COUNT_FILE and sleeps SLOW_S seconds, so the parent can SIGKILL it
after k finished batches; with PUBLISH_MARK, the rename of the first detrended product creates that file and hangs, so the parent
can kill it in the middle of publishing.
"""

import os
import sys
import time
from pathlib import Path

import torch

torch.set_num_threads(2)  # as tests/conftest.py: same summation order as the reference run

from builders import infer_cfg  # noqa: E402

import gtws_dl.carry as carry  # noqa: E402
import gtws_dl.reconstruct as recon  # noqa: E402
from gtws_dl.inference import infer  # noqa: E402

out, cube, ckpt = sys.argv[1:4]
slow = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
count = Path(sys.argv[5]) if len(sys.argv) > 5 else None
mark = Path(sys.argv[6]) if len(sys.argv) > 6 and sys.argv[6] else None

_predict, _run_net = recon.predict_tiled, carry.run_net


def _counting(fn):
    def counted(*a, **k):
        if count is not None:
            with open(count, "a") as f:
                f.write("batch\n")
        time.sleep(slow)
        return fn(*a, **k)
    return counted


recon.predict_tiled = _counting(_predict)  # windowed batches (carry_state=false)
carry.run_net = _counting(_run_net)  # carried blocks (the default)
_replace = os.replace


def hanging_replace(src, dst, *a, **k):
    # killed between writing the temp file and renaming it: the worst moment for a non-atomic writer
    if mark is not None and str(dst).endswith("_detrended_deseasonalized.nc"):
        mark.write_text(str(src))
        time.sleep(600)
    return _replace(src, dst, *a, **k)


os.replace = hanging_replace
infer(infer_cfg(Path(out), Path(cube), Path(ckpt), "batch_windows=4"))
print("INFER DONE")
