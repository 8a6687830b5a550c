"""Reconstruct TWSA from 1940 and write the products: ``python infer.py target=csr [ckpt_path=...]``."""

import hydra
from omegaconf import DictConfig

from gtws_dl.config import conf_dir


@hydra.main(config_path=conf_dir(), config_name="infer", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from gtws_dl.inference import infer

    infer(cfg)


if __name__ == "__main__":
    main()
