"""Train a TWSA reconstruction network: ``python train.py target=csr model=convlstm trainer=cpu``.

An alias of ``gtws-dl train`` (the app is :func:`gtws_dl.training.main`)."""

import sys

from gtws_dl.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
