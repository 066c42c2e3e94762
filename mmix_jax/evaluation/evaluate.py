"""Evaluation of a trained state: error, NLL, calibration (ECE), FGSM accuracy, spectra.

The model runs on device under the same mesh as training (per-example outputs sharded on the
data axis, gathered to every process); the metrics are computed on the host in float64 from
the float32 logits, so they do not depend on the batch size or the number of devices.

- ECE: expected calibration error with equal-width confidence bins (15 by default):
  Σ_b |B_b|/N · |accuracy(B_b) − mean confidence(B_b)|, a prediction with confidence c falling
  in the bin (i/15, (i+1)/15].
- FGSM, one signed-gradient step of the loss the paper's attack used (BCE between the softmax
  and the one-hot label), in one of two spaces (`EvalSettings.fgsm_space`):
  "normalized" (the authors' code): x_adv = x + ε·sign(∇_x loss) on the normalised model input,
  unclipped; "pixel": x_adv = clip(x + ε·sign(∇_x loss), 0, 1) on the image in [0, 1], the
  gradient taken through the normalisation. On CIFAR-10 (std ≈ 0.25) ε = 0.03 in pixel space is
  about 4× the same ε in normalised space.
- Reliability: per confidence bin (those of the ECE) the count, accuracy and mean confidence,
  what a reliability diagram draws.
- Distribution shift, out-of-distribution detection and PGD: mmix_jax.evaluation.robustness.
- Spectrum (the paper's flattening measure): for each class, the singular values of the
  matrix of hidden representations [n_class, features] at one mix point; reported as the
  largest and the sum of the others, per class and averaged over classes.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Optional

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from mmix_jax import parallel
from mmix_jax.data.pipeline import ArrayDataset, eval_batches
from mmix_jax.evaluation.attacks import FGSM_SPACES, fgsm_logits_fn, pgd_logits_fn, pgd_parts
from mmix_jax.evaluation.deformations import deformed_logits_fn
from mmix_jax.evaluation.input_space import InputSpace
from mmix_jax.state import TrainState

Batch = dict[str, jax.Array]


# ---------------------------------------------------------------- metrics from logits (host)

def log_softmax64(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def reliability_bins(probabilities: np.ndarray, labels: np.ndarray,
                     num_bins: int = 15) -> dict[str, list[float]]:
    """Per equal-width bin of the top-class confidence, (i/num_bins, (i+1)/num_bins]: count,
    accuracy and mean confidence (0 for an empty bin)."""
    chex.assert_rank(probabilities, 2)
    confidence = probabilities.max(axis=-1)
    correct = (probabilities.argmax(axis=-1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    bins = np.digitize(confidence, edges[1:-1], right=True)
    count = np.bincount(bins, minlength=num_bins).astype(np.float64)
    safe = np.maximum(count, 1.0)
    return {"count": count.tolist(),
            "accuracy": (np.bincount(bins, correct, num_bins) / safe).tolist(),
            "confidence": (np.bincount(bins, confidence, num_bins) / safe).tolist()}


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray,
                               num_bins: int = 15) -> float:
    """ECE over equal-width bins of the top-class confidence (see the module docstring)."""
    bins = reliability_bins(probabilities, labels, num_bins)
    count = np.asarray(bins["count"])
    gaps = np.abs(np.asarray(bins["accuracy"]) - np.asarray(bins["confidence"]))
    return float(np.sum(count / count.sum() * gaps))


def classification_metrics(logits: np.ndarray, labels: np.ndarray,
                           num_bins: int = 15) -> dict[str, float]:
    """accuracy, error_percent, nll (mean) and ece of logits [N, C] against labels [N]."""
    log_probs = log_softmax64(logits)
    accuracy = float(np.mean(log_probs.argmax(axis=-1) == labels))
    return {"accuracy": accuracy, "error_percent": 100.0 * (1.0 - accuracy),
            "nll": float(-np.mean(log_probs[np.arange(labels.shape[0]), labels])),
            "ece": expected_calibration_error(np.exp(log_probs), labels, num_bins)}


def class_spectra(representations: np.ndarray, labels: np.ndarray,
                  num_classes: int) -> dict[str, Any]:
    """Singular values of each class's representation matrix [n_c, features] (uncentred).

    Returns per class the largest singular value and the sum of the others, and their means
    over the classes present.
    """
    flat = np.asarray(representations, np.float64).reshape(representations.shape[0], -1)
    first, rest, values = [], [], []
    for label in range(num_classes):
        members = flat[labels == label]
        if members.shape[0] == 0:
            continue
        singular = np.linalg.svd(members, compute_uv=False)
        first.append(float(singular[0]))
        rest.append(float(singular[1:].sum()))
        values.append(singular.tolist())
    return {"first": first, "rest_sum": rest, "mean_first": float(np.mean(first)),
            "mean_rest_sum": float(np.mean(rest)), "singular_values": values}


# ---------------------------------------------------------------- per-example device functions

def logits_fn(space: InputSpace) -> Callable[..., jax.Array]:
    """Per-example logits; the functions here take (state, batch[, constants]), the constants
    being the whitening arrays of a `space` that whitens."""
    def fn(state: TrainState, batch: Batch, constants: Optional[dict] = None) -> jax.Array:
        inputs = space.to_model(space.to_pixels(batch["image"]), constants)
        return state.apply_fn(state.variables(), inputs, train=False)
    return fn


def representation_fn(space: InputSpace, point: int) -> Callable[[TrainState, Batch], jax.Array]:
    """The (float32) state at mix point `point`, as sown by the model, flattened per example."""

    def fn(state: TrainState, batch: Batch, constants: Optional[dict] = None) -> jax.Array:
        inputs = space.to_model(space.to_pixels(batch["image"]), constants)
        _, sown = state.apply_fn(state.variables(), inputs, train=False,
                                 mutable=["intermediates"])
        hidden = sown["intermediates"][f"mix_point_{point}"][0]
        return hidden.reshape(hidden.shape[0], -1).astype(jnp.float32)

    return fn


def run_per_example(fn: Callable, state: TrainState, dataset: ArrayDataset, batch_size: int,
                    mesh: Mesh, *constants: Any,
                    extras: Optional[dict[str, np.ndarray]] = None) -> np.ndarray:
    """`fn` (a `per_example_step`) over the whole split, padding dropped; `constants`, if any,
    passed to it after the batch; `extras`: more per-example arrays the batches carry."""
    outputs = []
    for batch in eval_batches(dataset, batch_size, extras):
        mask = batch.pop("mask")
        out = fn(state, parallel.shard_batch(parallel.process_share(batch), mesh), *constants)
        outputs.append((out, mask))
    return np.concatenate([np.asarray(parallel.to_host(out))[mask > 0] for out, mask in outputs])


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """config.eval: ece_bins, fgsm_epsilon (0 = skip), fgsm_space, spectrum_point (−1 = skip);
    the robustness metrics (mmix_jax.evaluation.robustness, each skipped when empty): deformations
    (mmix_jax.evaluation.deformations names), rotation_angles (fixed angles, degrees), ood_sets
    (mmix_jax.evaluation.ood names) with at most ood_examples noise images, pgd_steps (step counts, ε
    and space as FGSM's) with α = pgd_step_factor·ε/steps, pgd_random_start, on the first
    pgd_examples test images; `seed` draws every deformation, noise image and PGD start."""

    ece_bins: int = 15
    fgsm_epsilon: float = 0.0
    fgsm_space: str = "normalized"
    spectrum_point: int = -1
    deformations: tuple[str, ...] = ()
    rotation_angles: tuple[float, ...] = ()
    ood_sets: tuple[str, ...] = ()
    ood_examples: int = 10_000
    pgd_steps: tuple[int, ...] = ()
    pgd_step_factor: float = 2.5
    pgd_random_start: bool = True
    pgd_examples: int = 1000
    seed: int = 0


@functools.lru_cache(maxsize=64)
def per_example_step(mesh: Mesh, kind: str, space: InputSpace, *args: Any) -> Callable:
    """jit(shard_map) of the per-example function `kind` ("logits", "fgsm" with (ε, attack
    space), "pgd" with (ε, steps, step size, attack space), "pgd_start" / "pgd_step" /
    "pgd_logits" with (ε, step size, attack space), "deformed", "representation" with a mix
    point), built once per arguments: an evaluation repeated during training reuses the
    compiled function. A whitening `space` takes its constants as a third, replicated
    argument."""
    build = {"logits": logits_fn, "fgsm": fgsm_logits_fn, "pgd": pgd_logits_fn,
             "deformed": deformed_logits_fn, "representation": representation_fn,
             **{f"pgd_{part}": functools.partial(
                 lambda space, *args, part: pgd_parts(space, *args)[part], part=part)
                for part in ("start", "step", "logits")}}
    in_specs = (P(), P(parallel.DATA_AXIS)) + ((P(),) if space.whiten else ())
    return jax.jit(jax.shard_map(build[kind](space, *args), mesh=mesh, in_specs=in_specs,
                                 out_specs=P(parallel.DATA_AXIS)))


def full_evaluation(state: TrainState, dataset: ArrayDataset, space: InputSpace,
                    settings: EvalSettings, batch_size: int, mesh: Mesh,
                    num_classes: int, constants: Optional[dict] = None) -> dict[str, Any]:
    """Error, NLL, ECE; FGSM accuracy if ε > 0; the class spectra if a point is chosen.
    `constants`: the whitening arrays when `space.whiten` (data.preprocess_constants)."""
    if space.whiten and constants is None:
        raise ValueError("InputSpace(whiten=True) needs the ZCA arrays as `constants`.")
    extra = (parallel.replicate(constants, mesh),) if space.whiten else ()
    logits = run_per_example(per_example_step(mesh, "logits", space), state, dataset,
                             batch_size, mesh, *extra)
    results: dict[str, Any] = classification_metrics(logits, dataset.labels, settings.ece_bins)
    results["reliability"] = reliability_bins(np.exp(log_softmax64(logits)), dataset.labels,
                                              settings.ece_bins)
    if settings.fgsm_epsilon > 0:
        attacked = run_per_example(
            per_example_step(mesh, "fgsm", space, settings.fgsm_epsilon, settings.fgsm_space),
            state, dataset, batch_size, mesh, *extra)
        results["fgsm_epsilon"] = settings.fgsm_epsilon
        results["fgsm_space"] = settings.fgsm_space
        results["fgsm_accuracy"] = float(np.mean(attacked.argmax(axis=-1) == dataset.labels))
    if settings.spectrum_point >= 0:
        hidden = run_per_example(
            per_example_step(mesh, "representation", space, settings.spectrum_point),
            state, dataset, batch_size, mesh, *extra)
        results["spectrum_point"] = settings.spectrum_point
        results["spectrum"] = class_spectra(hidden, dataset.labels, num_classes)
    return results


# ---------------------------------------------------------------- during training

def evaluate_dataset(eval_step: Callable, state: TrainState, dataset: ArrayDataset,
                     batch_size: int, mesh: Mesh) -> dict[str, float]:
    """Accuracy, error (%) and mean NLL over every example of `dataset` (cheap: sums only).

    `eval_step` is `parallel.make_eval_step(mesh, preprocess=...)`; batches are sharded.
    """
    totals = {"nll": 0.0, "correct": 0.0, "count": 0.0}
    sums = [eval_step(state, parallel.shard_batch(parallel.process_share(batch), mesh))
            for batch in eval_batches(dataset, batch_size)]
    for batch_sums in jax.device_get(sums):
        for key in totals:
            totals[key] += float(batch_sums[key])
    accuracy = totals["correct"] / totals["count"]
    return {"accuracy": accuracy, "error_percent": 100.0 * (1.0 - accuracy),
            "nll": totals["nll"] / totals["count"]}


@jax.jit
def _probabilities(state: TrainState, images: jax.Array) -> jax.Array:
    return jax.nn.softmax(state.apply_fn(state.variables(), images, train=False), axis=-1)


def predict_probabilities(state: TrainState, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Softmax outputs [N, C] for raw feature inputs (single process: the 2-D figure)."""
    dataset = ArrayDataset(images, np.zeros(images.shape[0], np.int32))
    outputs = [(_probabilities(state, batch["image"]), batch["mask"])
               for batch in eval_batches(dataset, batch_size)]
    return np.concatenate([np.asarray(p)[m > 0] for p, m in jax.device_get(outputs)])


def mean_confidence(probabilities: np.ndarray) -> float:
    """Mean over examples of the largest predicted class probability."""
    return float(np.mean(np.max(probabilities, axis=-1)))


__all__ = ["EvalSettings", "InputSpace", "class_spectra", "classification_metrics",
           "FGSM_SPACES", "evaluate_dataset", "expected_calibration_error", "fgsm_logits_fn",
           "full_evaluation", "logits_fn", "mean_confidence", "per_example_step",
           "predict_probabilities", "reliability_bins", "representation_fn", "run_per_example"]
