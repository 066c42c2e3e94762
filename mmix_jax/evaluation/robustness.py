"""Robustness beyond clean accuracy: distribution shift, outliers and a multi-step attack.

The three failure kinds the paper's abstract names, measured on a trained state:
- deformations (mmix_jax.evaluation.deformations): accuracy, NLL and ECE on deformed copies of the test
  set, and accuracy against a fixed rotation angle;
- out-of-distribution detection (mmix_jax.evaluation.ood): AUROC and FPR at 95 % TPR of the maximum
  softmax probability and of the energy, the mean confidence on each set, and histograms of
  the confidence in and out of distribution;
- PGD (mmix_jax.evaluation.attacks): accuracy after each number of steps in `eval.pgd_steps`, ε and space
  as FGSM's, on the first `eval.pgd_examples` test images (a multi-step attack tells
  robustness from gradient masking: masking shows as FGSM accuracy that PGD takes away).
Every draw (deformation parameters, noise images, PGD starts) comes from `eval.seed` alone, so
every run of a study sees the same inputs.
"""

from __future__ import annotations

import time
from typing import Any, Optional

import numpy as np
from absl import logging
from jax.sharding import Mesh

from mmix_jax import parallel
from mmix_jax.data.pipeline import ArrayDataset, eval_batches
from mmix_jax.errors import ConfigError
from mmix_jax.evaluation import deformations, ood
from mmix_jax.evaluation.attacks import madry_step_size
from mmix_jax.evaluation.evaluate import (
    EvalSettings,
    InputSpace,
    classification_metrics,
    per_example_step,
    run_per_example,
)
from mmix_jax.state import TrainState


def requested(settings: EvalSettings) -> bool:
    return bool(settings.deformations or settings.rotation_angles or settings.ood_sets
                or settings.pgd_steps)


def ood_label(name: str) -> str:
    """The short name of an out-of-distribution set in results: npz:DIR/mnist_10k.npz →
    mnist_10k, tfds:svhn_cropped → svhn_cropped, noise names as they are."""
    kind, _, rest = name.partition(":")
    if kind == "npz":
        return rest.rstrip("/").rsplit("/", 1)[-1].removesuffix(".npz")
    return rest.split(":")[0] if kind == "tfds" else name


class _Runner:
    """Runs per-example functions of one state over data sets (shared mesh, constants)."""

    def __init__(self, state: TrainState, space: InputSpace, batch_size: int, mesh: Mesh,
                 constants: Optional[dict]):
        self.state, self.space, self.batch_size, self.mesh = state, space, batch_size, mesh
        self.constants = (parallel.replicate(constants, mesh),) if space.whiten else ()

    def __call__(self, kind: str, dataset: ArrayDataset, *args: Any,
                 extras: Optional[dict[str, np.ndarray]] = None) -> np.ndarray:
        step = per_example_step(self.mesh, kind, self.space, *args)
        return run_per_example(step, self.state, dataset, self.batch_size, self.mesh,
                               *self.constants, extras=extras)

    def pgd(self, dataset: ArrayDataset, steps: int, *args: Any,
            extras: Optional[dict[str, np.ndarray]] = None) -> np.ndarray:
        """Logits after `steps` PGD steps, each batch's iterate kept on device between steps
        dispatched from the host (attacks.pgd_parts); `args`: (ε, step size, space)."""
        start, step, logits = (per_example_step(self.mesh, f"pgd_{part}", self.space, *args)
                               for part in ("start", "step", "logits"))
        outputs = []
        for batch in eval_batches(dataset, self.batch_size, extras):
            mask = batch.pop("mask")
            sharded = parallel.shard_batch(parallel.process_share(batch), self.mesh)
            adv = start(self.state, sharded, *self.constants)
            for _ in range(steps):
                adv = step(self.state, dict(sharded, adv=adv), *self.constants)
            outputs.append((logits(self.state, dict(sharded, adv=adv), *self.constants), mask))
        return np.concatenate([np.asarray(parallel.to_host(out))[mask > 0]
                               for out, mask in outputs])


def deformation_results(run: _Runner, dataset: ArrayDataset,
                        settings: EvalSettings) -> dict[str, Any]:
    results: dict[str, Any] = {}
    if settings.deformations:
        results["deformations"] = {}
        for name in settings.deformations:
            sampling = deformations.parse(name).sampling_matrices(len(dataset), settings.seed)
            logits = run("deformed", dataset, extras={"sampling": sampling})
            results["deformations"][name] = classification_metrics(logits, dataset.labels,
                                                                   settings.ece_bins)
    if settings.rotation_angles:
        sweep: dict[str, list[float]] = {"angle": [], "accuracy": [], "nll": []}
        for angle in settings.rotation_angles:
            sampling = np.repeat(deformations.sampling_matrix("rotate", [angle]),
                                 len(dataset), axis=0).astype(np.float32)
            metrics = classification_metrics(run("deformed", dataset,
                                                  extras={"sampling": sampling}),
                                              dataset.labels, settings.ece_bins)
            sweep["angle"].append(float(angle))
            sweep["accuracy"].append(metrics["accuracy"])
            sweep["nll"].append(metrics["nll"])
        results["rotation_sweep"] = sweep
    return results


def ood_results(run: _Runner, dataset: ArrayDataset, settings: EvalSettings,
                data_dir: str) -> dict[str, Any]:
    in_logits = run("logits", dataset)
    results: dict[str, Any] = {"ood": {}, "confidence_histogram": {
        "in_distribution": ood.confidence_histogram(in_logits)}}
    count = min(len(dataset), settings.ood_examples)
    for name in settings.ood_sets:
        images = ood.load_images(name, shape=tuple(dataset.images.shape[1:]), count=count,
                                 seed=settings.seed, data_dir=data_dir)
        outside = ArrayDataset(images, np.zeros(images.shape[0], np.int32))
        out_logits = run("logits", outside)
        label = ood_label(name)
        results["ood"][label] = dict(ood.detection_metrics(in_logits, out_logits),
                                     source=name, examples=int(images.shape[0]))
        results["confidence_histogram"][label] = ood.confidence_histogram(out_logits)
    return results


def pgd_results(run: _Runner, dataset: ArrayDataset, settings: EvalSettings) -> dict[str, Any]:
    count = min(len(dataset), settings.pgd_examples)
    subset = ArrayDataset(dataset.images[:count], dataset.labels[:count])
    extras = None
    if settings.pgd_random_start:
        rng = np.random.default_rng([settings.seed, 1])
        extras = {"start": rng.uniform(-1.0, 1.0, subset.images.shape).astype(np.float32)}
    epsilon = settings.fgsm_epsilon
    accuracy = {}
    for steps in settings.pgd_steps:
        step_size = madry_step_size(epsilon, steps, settings.pgd_step_factor)
        logits = run.pgd(subset, steps, epsilon, step_size, settings.fgsm_space, extras=extras)
        accuracy[str(steps)] = float(np.mean(logits.argmax(-1) == subset.labels))
    clean = float(np.mean(run("logits", subset).argmax(-1) == subset.labels))
    return {"pgd": {"epsilon": epsilon, "space": settings.fgsm_space, "examples": count,
                    "random_start": settings.pgd_random_start,
                    "step_factor": settings.pgd_step_factor, "clean_accuracy": clean,
                    "accuracy": accuracy}}


def check_sources(settings: EvalSettings, dataset: ArrayDataset, data_dir: str = "") -> None:
    """Reads every out-of-distribution set now (DataError naming the entry if one cannot be
    read or has the wrong shape), so that a run does not fail only after training."""
    if settings.ood_sets and dataset.images.ndim == 4:
        for name in settings.ood_sets:
            ood.load_images(name, shape=tuple(dataset.images.shape[1:]), count=1,
                            seed=settings.seed, data_dir=data_dir)


def robustness_evaluation(state: TrainState, dataset: ArrayDataset, space: InputSpace,
                          settings: EvalSettings, batch_size: int, mesh: Mesh,
                          constants: Optional[dict] = None, data_dir: str = ""
                          ) -> dict[str, Any]:
    """The requested robustness metrics of `state` on the test split `dataset` (nested
    entries for evaluation.json; `summary_entries` flattens them)."""
    if not requested(settings):
        return {}
    if not space.is_image or dataset.images.ndim != 4:
        raise ConfigError("config.eval.deformations, rotation_angles and ood_sets need image "
                          f"data [N, H, W, C]; this data set's inputs are "
                          f"{list(dataset.images.shape[1:])}. Leave them empty for it.")
    run = _Runner(state, space, batch_size, mesh, constants)
    results: dict[str, Any] = {}
    seconds = {}
    for part, wanted, measure in (
            ("deformations", settings.deformations or settings.rotation_angles,
             lambda: deformation_results(run, dataset, settings)),
            ("ood", settings.ood_sets, lambda: ood_results(run, dataset, settings, data_dir)),
            ("pgd", settings.pgd_steps, lambda: pgd_results(run, dataset, settings))):
        if wanted:
            started = time.perf_counter()
            results.update(measure())
            seconds[part] = round(time.perf_counter() - started, 2)
    results["robustness_seconds"] = seconds
    logging.info("robustness metrics computed in %s seconds", seconds)
    return results


def summary_entries(results: dict[str, Any]) -> dict[str, float]:
    """The flat scalars summary.json and the results rows carry: deform_<name>_<metric>,
    ood_<set>_<metric>, pgd_accuracy_<steps>, pgd_clean_accuracy."""
    entries: dict[str, float] = {}
    for name, metrics in results.get("deformations", {}).items():
        entries.update({f"deform_{name}_{key}": value for key, value in metrics.items()})
    for name, metrics in results.get("ood", {}).items():
        entries.update({f"ood_{name}_{key}": value for key, value in metrics.items()
                        if isinstance(value, float)})
    if "pgd" in results:
        entries["pgd_clean_accuracy"] = results["pgd"]["clean_accuracy"]
        entries.update({f"pgd_accuracy_{steps}": value
                        for steps, value in results["pgd"]["accuracy"].items()})
    return entries


__all__ = ["check_sources", "ood_label", "requested", "robustness_evaluation", "summary_entries"]
