"""Child of the bounded-memory test: ``python rss_child.py CUBE CKPT OUT``.

Imports everything and warms the network up on one batch, then reconstructs the whole cube. Prints the peak
resident set size (``VmHWM`` of ``/proc/self/status``: this process's own high-water mark, not inherited from the
parent) after the warm-up and after the reconstruction, in bytes, as ``RSS <warm> <peak>``. A measured RSS, not a
cap on virtual address space: thread stacks and allocator arenas reserve address space they never touch.
"""

import sys

import torch

torch.set_num_threads(1)
from gtws_dl.checkpoint import load_checkpoint  # noqa: E402
from gtws_dl.reconstruct import reconstruct  # noqa: E402


def vm_hwm() -> int:
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("VmHWM")).split()[1]) * 1024


cube, ckpt, out = sys.argv[1], sys.argv[2], sys.argv[3]
module = load_checkpoint(ckpt).eval()
with torch.inference_mode():  # the working set of one batch of windows, as reconstruction runs it
    module(torch.zeros(2, 12, len(module.hparams.normalisation["channels"]), 90, 180))
warm = vm_hwm()
reconstruct(module, cube, out, ckpt_path=ckpt, device="cpu", batch_windows=2, progress=False)
print(f"RSS {warm} {vm_hwm()}", flush=True)
print("RECON DONE", flush=True)
