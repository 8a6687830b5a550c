"""Child process of the bounded-memory benchmark: build the module, reconstruct a cube, print peak RSS.

``python -m bench.rss_child --cube DIR --spec SPEC.json --work DIR [--device cpu]`` prints one JSON line:
``baseline_mb`` (peak RSS after imports and building the module), ``peak_mb`` (after the reconstruction),
``seconds`` and ``gpu_peak_mb`` (CUDA only). Peak RSS is ``VmHWM`` of ``/proc/self/status`` on Linux: unlike
``getrusage(RUSAGE_SELF).ru_maxrss``, which Linux carries over from the forking parent through ``exec`` (so a
child of a big parent reports the parent's RSS), VmHWM belongs to this process's own address space.
Elsewhere ``ru_maxrss`` is used.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
from pathlib import Path


def _maxrss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0 if sys.platform != "darwin" else kb / 2**20  # macOS reports bytes


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cube", required=True)
    ap.add_argument(
        "--spec", required=True, help="JSON: size, window, warmup, hidden, encoder, normalisation"
    )
    ap.add_argument("--work", required=True)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)

    from hydra.utils import instantiate

    from bench.cubes import CubeSize, compose_train
    from bench.inference import time_reconstruct

    spec = json.loads(Path(a.spec).read_text())
    size = CubeSize(**spec["size"])
    cfg = compose_train(
        a.cube,
        size,
        window=spec["window"],
        warmup=spec["warmup"],
        hidden=spec["hidden"],
        encoder=spec["encoder"],
    )
    norm = spec["normalisation"]
    module = instantiate(
        cfg.model,
        in_channels=len(norm["channels"]),
        targets=norm["targets"],
        normalisation=norm,
        lon_circular=True,
        _convert_="all",
    )
    baseline = _maxrss_mb()
    res = time_reconstruct(
        module, a.cube, a.work, device=a.device, batch_windows=spec.get("batch_windows", 4)
    )
    out = {"baseline_mb": baseline, "peak_mb": _maxrss_mb(), **res}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
