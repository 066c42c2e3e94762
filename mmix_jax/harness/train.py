"""The training loop of one run: data → state → compiled step → metrics, checkpoints, evaluation.

`train_and_evaluate(spec, workdir, splits)` resumes from workdir/checkpoints, trains, evaluates
the test split (error, NLL, ECE, FGSM, spectrum) and, with a validation split, the checkpoint
chosen on it. Semi-supervised runs (`spec.semi_supervised`) take a labelled and an unlabelled
stream and `ssl_mixup_step`; with ICT's mean teacher the teacher is what is evaluated. Progress
goes through clu (`ReportProgress`: steps/s and ETA; `Profile` for traces with
`config.profile_dir`) and one readable line of training metrics per `log_every_steps`.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Optional, Union

import jax
import numpy as np
from absl import logging
from clu import metric_writers, periodic_actions
from etils import epath
from jax.experimental import multihost_utils

from mmix_jax import parallel
from mmix_jax.data.datasets import (
    ArrayDataset,
    SemiSupervisedBatches,
    Splits,
    StreamingBatches,
    TrainBatches,
    eval_preprocess,
    preprocess_constants,
    train_preprocess,
)
from mmix_jax.data.records import RecordDataset
from mmix_jax.data.streaming import FrozenState, next_batch
from mmix_jax.data.streaming_splits import read_whole
from mmix_jax.errors import ConfigError
from mmix_jax.evaluation.evaluate import InputSpace, evaluate_dataset, full_evaluation
from mmix_jax.evaluation.robustness import robustness_evaluation
from mmix_jax.harness.checkpoint import Checkpoints
from mmix_jax.harness.configuration import RunSpec
from mmix_jax.harness.divergence import DivergenceGuard
from mmix_jax.harness.initialization import abstract_state, initial_state, state_builder
from mmix_jax.harness.preemption import PreemptedError, Preemption
from mmix_jax.harness.summaries import (
    EVALUATION_FILE,
    VAL_SELECTED_FILE,
    History,
    summary_scalars,
    write_json_atomically,
)
from mmix_jax.semi_supervised import paired_ssl_step
from mmix_jax.state import TrainState
from mmix_jax.step import mixup_step

Batches = Union[TrainBatches, SemiSupervisedBatches, StreamingBatches]
TRAIN_PROBE = 10_000  # training images a streaming run's train accuracy is measured on
METRIC_NAMES = ("loss", "mixed_accuracy", "supervised_loss", "unsupervised_loss", "unsupervised_weight")


@dataclasses.dataclass
class RunResult:
    state: Optional[TrainState]  # None for a variant reused from an earlier run (runs.run)
    summary: dict[str, Any]


def mesh_for(spec: RunSpec) -> jax.sharding.Mesh:
    """The mesh over all devices, after checking that both batch sizes split over it."""
    mesh = parallel.make_mesh()
    try:
        parallel.check_divisible(spec.batch_size, mesh, per_device=2 if spec.mix.mixes else 1)
        parallel.check_divisible(spec.eval_batch_size, mesh, "config.eval_batch_size")
        if spec.semi_supervised is not None:
            parallel.check_divisible(spec.semi_supervised.unlabeled_batch_size, mesh,
                                     "config.semi_supervised.unlabeled_batch_size",
                                     per_device=2 if spec.semi_supervised.spec.uses_unlabeled
                                     else 1)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    return mesh


def train_batches(spec: RunSpec, splits: Splits) -> Batches:
    """The run's training stream(s): batches[step] for every step, from (seed, step) alone;
    read ahead by loader threads when the training split is read on demand (streaming)."""
    if spec.semi_supervised is None:
        batches = TrainBatches(splits.train, spec.batch_size, spec.seed)
        if not isinstance(splits.train, RecordDataset):
            return batches
        return StreamingBatches(batches, spec.num_epochs * batches.steps_per_epoch,
                                spec.data.loader_threads, spec.data.prefetch_batches)
    return SemiSupervisedBatches(splits.train, splits.unlabeled, spec.batch_size,
                                 spec.semi_supervised.unlabeled_batch_size, spec.seed)


def evaluated(spec: RunSpec, state: TrainState) -> TrainState:
    """The weights a run is evaluated with: the mean teacher for ICT, else the state itself."""
    if spec.semi_supervised is not None and spec.semi_supervised.evaluates_teacher:
        return state.as_teacher()
    return state


def make_step(spec: RunSpec, splits: Splits, mesh: jax.sharding.Mesh, steps_per_epoch: int):
    """The compiled training step of the run (supervised or semi-supervised)."""
    preprocess = train_preprocess(spec.data, splits)
    constants = preprocess_constants(splits)
    if spec.semi_supervised is None:
        return parallel.make_train_step(functools.partial(mixup_step, config=spec.mix), mesh,
                                        preprocess=preprocess, constants=constants)
    ssl_step = paired_ssl_step(spec.semi_supervised.step_spec(steps_per_epoch))
    return parallel.make_train_step(
        ssl_step, mesh, preprocess=None if preprocess is None else parallel.each_part(preprocess),
        constants=constants)


def _mean_metrics(pending: list[dict[str, jax.Array]]) -> dict[str, float]:
    fetched = jax.device_get(pending)
    return {key: float(np.mean([m[key] for m in fetched])) for key in METRIC_NAMES
            if key in fetched[0]}


def train_and_evaluate(spec: RunSpec, workdir: epath.Path, splits: Splits) -> RunResult:
    """Trains one run (resuming from workdir/checkpoints), evaluates it, summarises it."""
    workdir.mkdir(parents=True, exist_ok=True)
    if jax.process_index() == 0:
        write_json_atomically(workdir / "config.json", spec.config)
    mesh = mesh_for(spec)
    batches = train_batches(spec, splits)
    total_steps = spec.num_epochs * batches.steps_per_epoch
    init_key, step_key = jax.random.split(jax.random.key(spec.seed))
    build, schedule = state_builder(spec, batches)
    has_validation = splits.validation is not None
    checkpoints = Checkpoints(workdir, spec.checkpoint.settings(batches.steps_per_epoch))
    target = abstract_state(build, mesh)
    try:
        restored = checkpoints.restore_latest(target, spec.config)
    except BaseException:  # a refused resume: close (and let Orbax finish) before exiting
        checkpoints.close()
        raise
    state = restored if restored is not None else initial_state(build, init_key, mesh)
    start_step = int(jax.device_get(state.step))
    stream = None
    if isinstance(batches, StreamingBatches):
        stream = batches.iterator(start_step)
        if restored is not None:
            checkpoints.restore_data_iterator(start_step, stream)
    history = History(workdir, start_step)
    train_step = make_step(spec, splits, mesh, batches.steps_per_epoch)
    eval_step = parallel.make_eval_step(mesh, preprocess=eval_preprocess(splits),
                                        constants=preprocess_constants(splits))

    def evaluate(dataset: ArrayDataset) -> dict[str, float]:
        return evaluate_dataset(eval_step, evaluated(spec, state), dataset,
                                spec.eval_batch_size, mesh)

    def newest_checkpoint() -> Optional[int]:
        return max(checkpoints.steps(), default=None)

    def save(step: int) -> None:
        if not guard.check(newest_checkpoint()):  # never save a non-finite state
            logging.warning("step %d: not saved, its loss or gradient is not finite", step)
            return
        if preemption.pending():  # SIGTERM came after this step's check: the next step saves
            return                # the state and stops, with no evaluation first
        metrics = {f"test_{k}": v for k, v in evaluate(splits.test).items()}
        if has_validation:
            metrics.update({f"val_{k}": v for k, v in evaluate(splits.validation).items()})
        history.add({"step": step, "epoch": step / batches.steps_per_epoch, **metrics})
        blocked = checkpoints.save(step, state, spec.config, metrics, data_state())
        logging.info("checkpoint %d started (blocked %.3f s; %s)", step, blocked,
                     ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))

    def data_state() -> Optional[FrozenState]:
        return None if stream is None else FrozenState(stream.get_state())

    guard = DivergenceGuard(spec.stop_after_nonfinite_steps, str(checkpoints.directory))
    writer = metric_writers.create_default_writer(
        str(workdir), just_logging=jax.process_index() > 0 or not spec.tensorboard)
    hooks = [periodic_actions.ReportProgress(num_train_steps=total_steps, writer=writer,
                                             every_steps=spec.log_every_steps)]
    if spec.profile_dir and jax.process_index() == 0:
        hooks.append(periodic_actions.Profile(logdir=spec.profile_dir, num_profile_steps=5))
    preemption = Preemption()
    pending: list[dict[str, jax.Array]] = []
    compile_s, train_start = 0.0, time.perf_counter()
    try:
        for step in range(start_step, total_steps):
            local = (parallel.process_share(batches[step]) if stream is None else
                     next_batch(stream, step))
            batch = parallel.shard_batch(local, mesh)
            with jax.profiler.StepTraceAnnotation("train", step_num=step):
                state, metrics = train_step(state, batch, jax.random.fold_in(step_key, step))
            pending.append(metrics)
            if step == start_step:  # the first call compiles: time it apart
                jax.block_until_ready(metrics)
                compile_s = time.perf_counter() - train_start
                train_start = time.perf_counter()
            done = step + 1
            guard.add(done, metrics)
            for hook in hooks:
                hook(done)
            if done % spec.log_every_steps == 0 or done == total_steps:
                guard.check(newest_checkpoint())
                scalars = _mean_metrics(pending)
                scalars["learning_rate"] = float(schedule(step))
                scalars["epoch"] = done / batches.steps_per_epoch
                writer.write_scalars(done, scalars)
                pending = []
            if preemption.reached(done):
                # Save first, evaluate never: a preemption's grace period (often ~30 s) may not
                # cover an evaluation. This checkpoint has no metrics: a resume point, which the
                # validation choice skips (Orbax ranks only checkpoints with metrics).
                if guard.check(newest_checkpoint()):  # a non-finite state is never saved
                    checkpoints.save(done, state, spec.config, data_state=data_state())
                checkpoints.wait()
                logging.warning("preempted (SIGTERM): saved step %d in %s; rerun the same command "
                                "to resume", done, checkpoints.directory)
                raise PreemptedError(done, checkpoints.directory)
            if done % checkpoints.settings.every_steps == 0 and done != total_steps:
                save(done)
        train_s = time.perf_counter() - train_start
        guard.require_finite(newest_checkpoint())  # no evaluation or summary of a NaN state
        if total_steps not in checkpoints.steps():
            save(total_steps)
        checkpoints.wait()
        best_step, val_selected = None, None
        if has_validation:
            best_step = checkpoints.best_step()
            if best_step != total_steps:  # else: the final evaluation below is the same
                val_selected = evaluate_test_split(
                    spec, checkpoints.restore_step(best_step, target), splits, mesh,
                    workdir, VAL_SELECTED_FILE)
    finally:
        preemption.restore()
        checkpoints.close()
    if jax.process_count() > 1:  # replicated state must be bit-identical on every process
        multihost_utils.assert_equal(state.params, "params differ between processes")

    test = evaluate_test_split(spec, state, splits, mesh, workdir)
    if best_step == total_steps:
        val_selected = test
        if jax.process_index() == 0:
            write_json_atomically(workdir / VAL_SELECTED_FILE, test)
    trained_steps = total_steps - start_step
    best = history.best("test_error_percent")
    summary = {
        "steps": total_steps, "resumed_from_step": start_step, "compile_s": compile_s,
        "train_s": train_s, "devices": int(mesh.devices.size), "processes": jax.process_count(),
        "images_per_s": max(trained_steps - 1, 0) * spec.batch_size / max(train_s, 1e-9),
        "device_kind": jax.devices()[0].device_kind, "train_examples": len(splits.train),
        "train_accuracy": evaluate(train_probe(splits))["accuracy"], **summary_scalars(test),
        "best_test_error_percent": best["test_error_percent"], "best_test_epoch": best["epoch"],
        "evaluations": len(history.entries),
    }
    if val_selected is not None:
        summary.update(val_selected_scalars(val_selected, batches.steps_per_epoch))
    writer.write_scalars(total_steps, {f"final/{k}": v for k, v in summary.items()
                                       if isinstance(v, (int, float))})
    writer.flush()
    return RunResult(state, summary)


def train_probe(splits: Splits) -> ArrayDataset:
    """The training images the train accuracy is measured on: all of an in-memory split, the
    first TRAIN_PROBE of a streamed one (in evaluation form)."""
    if isinstance(splits.train, RecordDataset):
        return read_whole(splits.train.subset(np.arange(min(len(splits.train), TRAIN_PROBE))))
    return splits.train


def evaluate_test_split(spec: RunSpec, state: TrainState, splits: Splits,
                        mesh: jax.sharding.Mesh, workdir: epath.Path,
                        filename: str = EVALUATION_FILE) -> dict[str, Any]:
    """The full evaluation (error, NLL, ECE, FGSM, spectrum, and the robustness metrics asked
    for in config.eval) of the test split; process 0 writes it to workdir/`filename`."""
    space = InputSpace(splits.mean, splits.std, whiten=splits.zca is not None)
    weights, constants = evaluated(spec, state), preprocess_constants(splits)
    results = full_evaluation(weights, splits.test, space, spec.eval, spec.eval_batch_size, mesh,
                              spec.num_classes, constants)
    results.update(robustness_evaluation(weights, splits.test, space, spec.eval,
                                         spec.eval_batch_size, mesh, constants,
                                         spec.data.data_dir))
    results["step"] = int(jax.device_get(state.step))
    if jax.process_index() == 0:
        write_json_atomically(workdir / filename, results)
    return results


def val_selected_scalars(results: dict[str, Any], steps_per_epoch: int) -> dict[str, Any]:
    """summary.json's val_selected_* entries from the evaluation of the chosen checkpoint."""
    scalars = {f"val_selected_{k}": v for k, v in summary_scalars(results).items()}
    scalars["val_selected_epoch"] = results["step"] / steps_per_epoch
    return scalars


__all__ = ["RunResult", "evaluate_test_split", "mesh_for", "train_and_evaluate",
           "train_batches", "val_selected_scalars"]
