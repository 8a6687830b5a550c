"""Child of the memory-limit test: ``python rlimit_child.py CUBE CKPT OUT HEADROOM_MB``.

Imports everything and warms the network up, then caps its own address space (RLIMIT_AS) at its peak so far (imports + one forward pass of a batch: the working set of the network)
plus HEADROOM_MB — less than the predictor array — and reconstructs the whole cube, which must stream.
"""

import resource
import sys

import torch

torch.set_num_threads(1)
from gtws_dl.inference import load_checkpoint  # noqa: E402
from gtws_dl.reconstruct import reconstruct  # noqa: E402

cube, ckpt, out, headroom = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
module = load_checkpoint(ckpt).eval()
with torch.inference_mode():
    module(torch.zeros(2, 12, len(module.hparams.normalisation["channels"]), 90, 180))  # warm-up allocations
vm = int(next(line for line in open("/proc/self/status") if line.startswith("VmPeak")).split()[1]) * 1024
limit = vm + headroom * 2**20
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
print(f"VMLIMIT {limit}", flush=True)
reconstruct(module, cube, out, ckpt_path=ckpt, device="cpu", batch_windows=2, progress=False)
print("RECON DONE", flush=True)
