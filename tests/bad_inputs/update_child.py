"""Child process of the update kill tests: ``python update_child.py KILL_AT OVERRIDE...``.

Runs the real ``gtws-dl update`` app (``gtws_dl.update.main``) with the Hydra overrides given; ``KILL_AT`` names
the moment the child SIGKILLs itself (test hooks, monkeypatched here in the child only):

``cube``     after the cube's predictors are written, before its targets and manifest;
``recon``    after the first block of the reconstruction is written;
``publish``  after the first product (NetCDF + Zarr copy) of the new set is written;
``swap``     after the new products folder is swapped in, before the journal is committed;
``commit``   with everything written, before the journal is committed;
``none``     no kill.
"""

import os
import signal
import sys

import torch

torch.set_num_threads(2)  # the same summation order as the reference run

import gtws_dl.cube.extend as extend  # noqa: E402
import gtws_dl.journal as journal  # noqa: E402
import gtws_dl.post.append as append  # noqa: E402
import gtws_dl.recon_store as recon_store  # noqa: E402
import gtws_dl.update as update  # noqa: E402

kill_at, overrides = sys.argv[1], sys.argv[2:]


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def after(fn, n: int = 1):
    calls = []

    def wrapped(*a, **k):
        out = fn(*a, **k)
        calls.append(1)
        if len(calls) >= n:
            die()
        return out

    return wrapped


def before(fn):
    def wrapped(*a, **k):
        die()
        return fn(*a, **k)

    return wrapped


if kill_at == "cube":
    extend._append_targets = before(extend._append_targets)
elif kill_at == "recon":
    recon_store.BlockWriter.write = after(recon_store.BlockWriter.write)
elif kill_at == "publish":
    append._append_product = after(append._append_product)
elif kill_at == "swap":
    update.exchange = after(update.exchange)
elif kill_at == "commit":
    journal.Journal.commit = before(journal.Journal.commit)
elif kill_at != "none":
    raise SystemExit(f"unknown kill point {kill_at!r}")

sys.argv = [sys.argv[0], *overrides]
update.main()
