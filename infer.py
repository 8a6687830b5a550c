"""Reconstruct TWSA from 1940 and write the products: ``python infer.py target=csr [ckpt_path=...]``.

An alias of ``gtws-dl infer`` (the app is :func:`gtws_dl.inference.main`)."""

import sys

from gtws_dl.cli import main

if __name__ == "__main__":
    sys.exit(main(["infer", *sys.argv[1:]]))
