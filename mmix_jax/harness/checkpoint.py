"""Orbax checkpoints of the whole TrainState plus the config that produced it.

Layout: `workdir/checkpoints/<step>/{state,config[,data]}` (data: a streaming run's iterator
state), written by an Orbax CheckpointManager, asynchronously, keeping the newest `keep`
checkpoints and the best one by a chosen metric. Orbax writes into a temporary directory and
renames it when complete, so a process killed mid-save leaves no half checkpoint among the
steps (the temporary one is cleaned up on restart).

On resume the stored config is compared first: a checkpoint of a run with a different model,
data, optimiser, mixing or semi-supervised set-up is refused (ConfigError naming each differing
key with its stored and new value) and left alone, as is one whose arrays (Orbax's metadata)
do not match this run's state. Only a checkpoint proven corrupt (its metadata unreadable, or
its arrays unreadable while their structure matches) is reported in one line, moved to
`workdir/checkpoints_unreadable/` (never deleted), and the next older one tried. An I/O error
(OSError) is retried and then reported, never taken for corruption: nothing is moved.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Optional

import grain.python as grain
import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers

from mmix_jax.errors import ConfigError, WorkdirError
from mmix_jax.harness import state_layout
from mmix_jax.harness.summaries import workdir_path

# Keys whose change makes a checkpoint meaningless for the run (the state's structure, the data
# order, the objective or the update). Everything else (epochs, logging, checkpoint cadence,
# evaluation, ...) may change on resume.
IDENTITY_KEYS = ("seed", "data", "num_classes", "model", "batch_size", "loss", "mix",
                 "optimizer", "semi_supervised", "cross_device_batch_norm")
# How the data are read, not which batches they give: free to change on resume.
READING_KEYS = ("data.streaming", "data.loader_threads", "data.prefetch_batches",
                "data.prepare_timeout_s")
# Identity keys added after checkpoints were written, with the value their absence meant: a
# stored config without one reads as this default, so older runs still resume.
ADDED_KEY_DEFAULTS = {"semi_supervised.batch_norm_passes": "step",
                      "semi_supervised.target_gradient": "stop"}
# An OSError while reading a checkpoint is retried this many times (1, 2, 4 s apart).
IO_ATTEMPTS = 4


@dataclasses.dataclass(frozen=True)
class CheckpointSpec:
    """config.checkpoint: every_steps (0: every_epochs epochs), keep, best_metric (with a
    validation split a val_* metric: the kept best checkpoint is the one reported as
    "validation selected"), best_mode."""

    every_steps: int = 0
    every_epochs: int = 1
    keep: int = 3
    best_metric: str = "test_accuracy"
    best_mode: str = "max"
    async_save: bool = True

    def settings(self, steps_per_epoch: int) -> "CheckpointSettings":
        """The settings of a run with `steps_per_epoch` steps per epoch."""
        return CheckpointSettings(every_steps=self.every_steps or steps_per_epoch * self.every_epochs,
                                  keep=self.keep, best_metric=self.best_metric or None,
                                  best_mode=self.best_mode, async_save=self.async_save)


@dataclasses.dataclass(frozen=True)
class CheckpointSettings:
    every_steps: int = 1000
    keep: int = 3
    best_metric: Optional[str] = "test_accuracy"
    best_mode: str = "max"
    async_save: bool = True

    def __post_init__(self):
        if self.every_steps <= 0 or self.keep <= 0:
            raise ConfigError(f"config.checkpoint = {self}: every_steps and keep must be > 0.")
        if self.best_mode not in ("max", "min"):
            raise ConfigError(f"config.checkpoint.best_mode = {self.best_mode!r} is invalid: "
                              "choose 'max' or 'min'.")


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        flat: dict[str, Any] = {}
        for key, value in tree.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: list(tree) if isinstance(tree, tuple) else tree}


def config_differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """'key: stored → current' for each identity key that differs between two configs."""
    def identity(config: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in _flatten(config).items()
                if k.split(".")[0] in IDENTITY_KEYS and k not in READING_KEYS}

    old, new = identity(stored), identity(current)
    for key, default in ADDED_KEY_DEFAULTS.items():
        section = key.rsplit(".", 1)[0] + "."
        if key not in old and any(k.startswith(section) for k in old):
            old[key] = default
    return [f"{key}: {old.get(key, '<absent>')!r} → {new.get(key, '<absent>')!r}"
            for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]


class Checkpoints:
    """Save, resume and validate the checkpoints of one run directory."""

    def __init__(self, workdir: epath.PathLike, settings: CheckpointSettings):
        workdir = workdir_path(workdir)
        self.directory = workdir / "checkpoints"
        self.unreadable_directory = workdir / "checkpoints_unreadable"
        self.settings = settings
        self._manager = self._open()

    def _open(self) -> ocp.CheckpointManager:
        policies: list[Any] = [checkpoint_managers.LatestN(self.settings.keep)]
        best: dict[str, Any] = {}
        if self.settings.best_metric:
            metric = self.settings.best_metric
            policies.append(checkpoint_managers.BestN(
                get_metric_fn=lambda metrics: metrics[metric], n=1,
                reverse=self.settings.best_mode == "min", keep_checkpoints_without_metrics=False))
            # The preservation policy only keeps the best checkpoint; `best_step()` ranks by
            # best_fn and, without it, silently returns the latest step.
            best = dict(best_fn=lambda metrics: metrics[metric], best_mode=self.settings.best_mode)
        options = ocp.CheckpointManagerOptions(
            **best, preservation_policy=checkpoint_managers.AnyPreservationPolicy(policies),
            enable_async_checkpointing=self.settings.async_save, cleanup_tmp_directories=True,
            create=True)
        # Handlers named up front, so that a new process can read a step's metadata before
        # anything was saved or restored through this manager.
        return ocp.CheckpointManager(self.directory, options=options, item_handlers={
            "state": ocp.StandardCheckpointHandler(), "config": ocp.JsonCheckpointHandler(),
            "data": grain.PyGrainCheckpointHandler()})

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any, config: dict[str, Any],
             metrics: Optional[dict[str, float]] = None, data_state: Optional[Any] = None
             ) -> float:
        """Starts saving `state` and `config` (and a streaming run's data iterator state, a
        `streaming.FrozenState`) at `step`; returns the seconds the call blocked."""
        start = time.perf_counter()
        items = dict(state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(config))
        if data_state is not None:
            items["data"] = grain.PyGrainCheckpointSave(data_state)
        self._manager.save(step, args=ocp.args.Composite(**items), metrics=metrics, force=True)
        return time.perf_counter() - start

    def restore_data_iterator(self, step: int, iterator: Any) -> None:
        """Sets a streaming run's data iterator to the state saved at `step`, when that
        checkpoint has one (a checkpoint of the in-memory path has none: the iterator was
        positioned at `step` already), and checks it agrees with the step."""
        if (self.directory / str(step) / "data").exists():
            self._read("data iterator", step, lambda: self._manager.restore(
                step, args=ocp.args.Composite(data=grain.PyGrainCheckpointRestore(iterator))))
        position = iterator.get_state().get("next_index")
        if position != step:
            raise WorkdirError(
                f"{self.directory / str(step)}: the data iterator was saved at position "
                f"{position} but the state at step {step}; the checkpoint is inconsistent. Move "
                "that step's folder aside to resume from the previous one.")

    def wait(self) -> None:
        """Blocks until every started save is complete on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        # Orbax's close() waits for saves but not for the start-up removal of a killed save's
        # temporary folder: a process exiting right after a refusal would die with it running.
        cleanup = getattr(self._manager, "_cleanup_tmp_directory_future", None)
        if cleanup is not None:
            cleanup.result()
        self._manager.close()

    def _set_aside(self, step: int, error: Exception) -> None:
        target = self.unreadable_directory / f"{step}-{int(time.time())}"
        if jax.process_index() == 0:
            self.unreadable_directory.mkdir(parents=True, exist_ok=True)
            (self.directory / str(step)).rename(target)
        if jax.process_count() > 1:  # no process reopens the directory before the move is done
            multihost_utils.sync_global_devices(f"mmix_set_aside_{step}")
        logging.warning("checkpoint %s is unreadable (%s: %s); moved to %s, resuming from the "
                        "previous one", self.directory / str(step), type(error).__name__,
                        str(error).splitlines()[0][:200] if str(error) else "", target)
        self.close()
        self._manager = self._open()

    def best_step(self) -> Optional[int]:
        """The kept step with the best `best_metric` (None without a metric or checkpoints)."""
        return self._manager.best_step() if self.settings.best_metric else None

    def restore_step(self, step: int, abstract_state: Any) -> Any:
        """The state saved at `step`, placed like `abstract_state` (an earlier layout moved
        into today's fields: `state_layout`)."""
        stored = self._manager.item_metadata(step)["state"]
        legacy = state_layout.is_batch_stats_layout(getattr(stored, "tree", stored))
        target = state_layout.batch_stats_target(abstract_state) if legacy else abstract_state
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target)))["state"]
        return state_layout.from_batch_stats_layout(abstract_state, restored) if legacy else restored

    def _read(self, what: str, step: int, read: Callable[[], Any]) -> Any:
        """read(), retried on OSError; a persistent one is reported, touching nothing."""
        for attempt in range(IO_ATTEMPTS):
            try:
                return read()
            except OSError as error:
                if attempt == IO_ATTEMPTS - 1:
                    raise WorkdirError(
                        f"could not read the {what} of {self.directory / str(step)} after "
                        f"{IO_ATTEMPTS} attempts ({type(error).__name__}: {error}); nothing was "
                        "moved. Check the file system and rerun the same command.") from error
                logging.warning("reading %s of step %d failed (%s); retrying", what, step, error)
                time.sleep(2.0 ** attempt)
        raise AssertionError("unreachable")

    def _stored_arrays(self, step: int) -> Optional[list[tuple[int, ...]]]:
        """Sorted shapes of the arrays Orbax's metadata lists for the state (dtypes are cast on
        restore); None if the metadata itself cannot be read (corrupt)."""
        try:
            metadata = self._read("metadata", step,
                                  lambda: self._manager.item_metadata(step)["state"])
            return sorted(tuple(leaf.shape) for leaf in jax.tree.leaves(metadata))
        except WorkdirError:
            raise
        except Exception:  # noqa: BLE001 - unreadable metadata: Orbax says it is damaged
            return None

    def restore_latest(self, abstract_state: Any, config: dict[str, Any]) -> Optional[Any]:
        """The newest readable state (placed like `abstract_state`), or None if there is none.

        Raises ConfigError, touching nothing, if the stored config differs in an identity key or
        the stored arrays differ from `abstract_state`'s; WorkdirError, touching nothing, on an
        I/O error that persists. Sets aside only checkpoints proven corrupt.
        """
        wanted = sorted(tuple(leaf.shape) for leaf in jax.tree.leaves(abstract_state))
        for step in reversed(self.steps()):
            try:
                stored = self._read("config", step, lambda step=step: self._manager.restore(
                    step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"])
            except WorkdirError:
                raise
            except Exception as error:  # noqa: BLE001 - a config file that does not parse
                self._set_aside(step, error)
                continue
            differences = config_differences(stored, config)
            if differences:
                raise ConfigError(
                    f"{self.directory} holds checkpoints of a different run ("
                    + "; ".join(differences) + "). Use a new --workdir, or restore those keys.")
            arrays = self._stored_arrays(step)
            if arrays is None:
                self._set_aside(step, ValueError("its Orbax metadata cannot be read"))
                continue
            if arrays != wanted:
                raise ConfigError(
                    f"{self.directory / str(step)} holds a state of {len(arrays)} arrays that do "
                    f"not match this run's {len(wanted)} (same config keys, other code or "
                    "library version?); nothing was moved. Use a new --workdir, or the version "
                    "that wrote it.")
            try:
                restored = self._read("state", step, lambda step=step: self.restore_step(
                    step, abstract_state))
            except (WorkdirError, ConfigError):
                raise
            except Exception as error:  # noqa: BLE001 - structure matches, data unreadable
                self._set_aside(step, error)
                continue
            logging.info("resumed from %s", self.directory / str(step))
            return restored
        return None


def abstract_like(tree: Any, sharding: jax.sharding.Sharding) -> Any:
    """Shape/dtype structs of `tree` with `sharding`: the restore target on the current mesh."""
    return jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding),
                        tree)
