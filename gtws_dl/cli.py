"""``gtws-dl <command> [hydra overrides]``: one console script for every stage (``pip install`` installs it).

Each command is the stage's own Hydra app (``python -m gtws_dl.ingest``, ``python train.py`` …), run under this
name: its overrides, ``--help``, ``--cfg job``, ``-m`` sweeps work unchanged. Its Hydra job is named after the
command (``hydra.job.name``), so the log is ``<run dir>/<command>.log``. User errors print one line and exit 2
(:func:`gtws_dl.config.command`; the traceback with ``HYDRA_FULL_ERROR=1``).
"""

from __future__ import annotations

import importlib
import os
import sys

# command: (module with the Hydra ``main``, one-line description); imported only when its command runs
COMMANDS: dict[str, tuple[str, str]] = {
    "twin": ("gtws_dl.twin.__main__", "generate the twin Earth's ERA5, GRACE, vegetation and truth files"),
    "ingest": ("gtws_dl.ingest", "build the predictor and target cubes from the input files"),
    "train": ("gtws_dl.training", "train a reconstruction network on the cube"),
    "infer": ("gtws_dl.inference", "reconstruct every month and write the products"),
    "update": ("gtws_dl.update", "append the input files' new months (ERA5T final) to cube, reconstruction, products"),
    "skill": ("gtws_dl.evaluate.truth", "score the products against the twin's truth"),
    "report": ("gtws_dl.evaluate.report.__main__", "write the evaluation report (maps, budgets, ENSO)"),
    "leaderboard": ("gtws_dl.experiments.leaderboard", "compare every model on one cube and split"),
}


COMMAND_ENV = "GTWS_DL_COMMAND"


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: gtws-dl <command> [key=value ...] [--help] [--cfg job] [-m]", "", "commands:"]
    lines += [f"  {name:<{width}}  {desc}" for name, (_, desc) in COMMANDS.items()]
    lines += ["", "`gtws-dl <command> --help` lists a command's config groups and keys; e.g.",
              "  gtws-dl twin paths.output_dir=outputs/demo", "  gtws-dl ingest paths.output_dir=outputs/demo",
              "  gtws-dl train experiment=demo paths.output_dir=outputs/demo",
              "  gtws-dl infer target=all paths.output_dir=outputs/demo"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run ``argv`` (default ``sys.argv[1:]``): ``[command, *overrides]``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    again = os.environ.get(COMMAND_ENV)
    if again in COMMANDS and (not argv or argv[0] not in COMMANDS):
        argv = [again, *argv]  # re-run by Lightning's DDP launcher as `python <script> <overrides>`
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"gtws-dl: unknown command {name!r}; expected one of {', '.join(COMMANDS)} (gtws-dl --help)",
              file=sys.stderr)
        return 2
    app = importlib.import_module(COMMANDS[name][0])  # by name: `gtws-dl --help` imports no stage
    if not any(a.startswith("hydra.job.name=") for a in rest):
        rest.append(f"hydra.job.name={name}")
    # argv[0] stays the script: DDP ranks re-run `python argv[0] argv[1:]`, and find the command in the environment
    os.environ[COMMAND_ENV] = name
    sys.argv = [sys.argv[0], *rest]
    app.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
