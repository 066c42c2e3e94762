"""Command line: mmix-train --config=configs/default.py[:arg] --workdir=DIR [--config.key=value].

`--mode=evaluate` evaluates the newest checkpoint of each run in DIR instead of training.

Thin on purpose: flags in, `runs.run` does the work. Configuration and workdir errors end the
program with one line naming what is wrong, before anything is computed or written.

Multi-host: pass --coordinator_address/--num_processes/--process_id (one process per host or
per GPU), or --distributed alone where JAX detects the cluster itself (Cloud TPU, SLURM, ...).

CPU hosts: --cpu_devices=N splits the CPU into N devices (one per core) so that the data-parallel
step runs on every core; --cpu_tuning applies the XLA:CPU flags measured faster for convolutional
nets (mmix_jax/harness/host.py). docs/performance.md has the recipe, with the environment variables
(e.g. GLIBC_TUNABLES=glibc.malloc.hugetlb=1) worth setting beside them.
"""

from __future__ import annotations

import logging as py_logging
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from mmix_jax.errors import ConfigError, DivergedError, WorkdirError
from mmix_jax.harness import host, runs

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file, e.g. configs/default.py or configs/default.py:manifold.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for logs, summaries and figures.")
_MODE = flags.DEFINE_enum(
    "mode", "train", ["train", "evaluate"],
    "train: train (resuming from the workdir's checkpoints) and evaluate; evaluate: only "
    "evaluate the newest checkpoint of each run in the workdir, writing evaluation.json.")
_VAL_SELECTED = flags.DEFINE_bool(
    "evaluate_val_selected", True, "With --mode=evaluate: also evaluate the checkpoint chosen on "
    "the validation split (evaluation_val_selected.json); false: the newest checkpoint only.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() with JAX's cluster auto-detection.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0, for multi-process runs.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", 0, "Split the CPU into this many JAX devices, e.g. one per core, so that the "
    "data-parallel step uses every core (0: JAX's default, one CPU device).", lower_bound=0)
_CPU_TUNING = flags.DEFINE_bool(
    "cpu_tuning", False, "Apply the XLA:CPU flags of mmix_jax.harness.host.CPU_TUNING_XLA_FLAGS "
    "(single-threaded devices, Eigen convolutions); use with --cpu_devices, and start the command "
    "with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (docs/performance.md).")
flags.mark_flags_as_required(["config", "workdir"])

_CHATTY_LIBRARIES = ("/orbax/", "/clu/", "/jax/_src/")


class _QuietLibraryInfo(py_logging.Filter):
    """Keeps progress readable: library INFO lines are dropped, their warnings kept."""

    def filter(self, record: py_logging.LogRecord) -> bool:
        return record.levelno >= py_logging.WARNING or not any(
            part in record.pathname for part in _CHATTY_LIBRARIES) or "logging_writer" in record.pathname


def initialize_distributed() -> None:
    """jax.distributed.initialize from the flags; nothing for a single process."""
    if _COORDINATOR.value or _NUM_PROCESSES.value is not None:
        jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                                   num_processes=_NUM_PROCESSES.value,
                                   process_id=_PROCESS_ID.value)
    elif _DISTRIBUTED.value:
        jax.distributed.initialize()


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.get_absl_handler().addFilter(_QuietLibraryInfo())
    host.configure_cpu(_CPU_DEVICES.value, _CPU_TUNING.value)
    initialize_distributed()
    try:
        if _MODE.value == "evaluate":
            runs.evaluate(_CONFIG.value, _WORKDIR.value, val_selected=_VAL_SELECTED.value)
        else:
            runs.run(_CONFIG.value, _WORKDIR.value)
    except (ConfigError, WorkdirError, DivergedError) as error:
        sys.exit(f"mmix-train: error: {error}")


def run_cli() -> None:
    """Entry point of the `mmix-train` console script."""
    app.run(main)


if __name__ == "__main__":
    run_cli()
