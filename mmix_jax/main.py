"""Command line: mmix-train --config=configs/default.py[:arg] --workdir=DIR [--config.key=value].

Thin on purpose: flags in, `train.run` does the work. Configuration and workdir errors end the
program with one line naming what is wrong, before anything is computed or written.
"""

from __future__ import annotations

import sys

from absl import app, flags
from ml_collections import config_flags

from mmix_jax import train
from mmix_jax.configuration import ConfigError

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file, e.g. configs/default.py or configs/default.py:manifold.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for logs, summaries and figures.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        train.run(_CONFIG.value, _WORKDIR.value)
    except (ConfigError, train.WorkdirError) as error:
        sys.exit(f"mmix-train: error: {error}")


def run_cli() -> None:
    """Entry point of the `mmix-train` console script."""
    app.run(main)


if __name__ == "__main__":
    run_cli()
