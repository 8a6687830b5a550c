"""Train a TWSA reconstruction network: ``python train.py target=csr model=convlstm trainer=cpu``."""

import hydra
from omegaconf import DictConfig

from gtws_dl.config import conf_dir


@hydra.main(config_path=conf_dir(), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from gtws_dl.training import train

    return train(cfg)["best_val_loss"]


if __name__ == "__main__":
    main()
