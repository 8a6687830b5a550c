"""``python -m gtws_dl.evaluate.report paths.output_dir=...`` (config ``conf/report.yaml``)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from gtws_dl.config import command, conf_dir
from gtws_dl.evaluate.report.build import build_report, print_key_numbers


@hydra.main(config_path=conf_dir(), config_name="report", version_base="1.3")
@command(reads_cube=True)
def main(cfg: DictConfig) -> None:
    path = build_report(cfg)
    print_key_numbers(path.parent / "numbers.json")
    print(f"written {path}")


if __name__ == "__main__":
    main()
