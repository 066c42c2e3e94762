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
from jax.sharding import Mesh, PartitionSpec as P

from mmix_jax import parallel
from mmix_jax.data.augment import standardize
from mmix_jax.data.pipeline import ArrayDataset, eval_batches
from mmix_jax.data.zca import whiten
from mmix_jax.losses import bce_loss
from mmix_jax.state import TrainState

Batch = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class InputSpace:
    """How stored inputs become pixels in [0, 1] (the attack's space) and model inputs.

    Image data (uint8, with per-channel mean/std): pixels = x / 255, model input =
    (pixels − mean) / std, adversarial pixels clipped to [0, 1]. Other data (mean None): the
    features are used as they are, unclipped.
    """

    mean: Optional[tuple[float, ...]] = None
    std: Optional[tuple[float, ...]] = None
    whiten: bool = False  # ZCA after normalisation: its arrays come as the functions' constants

    def to_pixels(self, images: jax.Array) -> jax.Array:
        images = images.astype(jnp.float32)
        return images / 255.0 if self.mean is not None else images

    def to_model(self, pixels: jax.Array, constants: Optional[dict] = None) -> jax.Array:
        if self.mean is None:
            return pixels
        inputs = standardize(pixels, self.mean, self.std)
        return whiten(inputs, constants) if self.whiten else inputs

    def normalized(self, pixels: jax.Array) -> jax.Array:
        """The space FGSM attacks by default: after normalisation, before any whitening."""
        return pixels if self.mean is None else standardize(pixels, self.mean, self.std)

    def from_normalized(self, inputs: jax.Array, constants: Optional[dict] = None) -> jax.Array:
        return whiten(inputs, constants) if self.whiten else inputs

    def clip(self, pixels: jax.Array) -> jax.Array:
        return jnp.clip(pixels, 0.0, 1.0) if self.mean is not None else pixels


# ---------------------------------------------------------------- metrics from logits (host)

def log_softmax64(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray,
                               num_bins: int = 15) -> float:
    """ECE over equal-width bins of the top-class confidence (see the module docstring)."""
    chex.assert_rank(probabilities, 2)
    confidence = probabilities.max(axis=-1)
    correct = (probabilities.argmax(axis=-1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    bins = np.digitize(confidence, edges[1:-1], right=True)
    ece = 0.0
    for b in range(num_bins):
        members = bins == b
        if members.any():
            ece += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(ece)


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


FGSM_SPACES = ("normalized", "pixel")


def fgsm_logits_fn(space: InputSpace, epsilon: float,
                   attack_space: str = "normalized") -> Callable[[TrainState, Batch], jax.Array]:
    """Logits on the FGSM examples of a batch: ε in the units of `attack_space` (FGSM_SPACES)."""
    if attack_space not in FGSM_SPACES:
        raise ValueError(f"FGSM space {attack_space!r}: choose one of {FGSM_SPACES}.")

    def fn(state: TrainState, batch: Batch, constants: Optional[dict] = None) -> jax.Array:
        def logits_of(inputs: jax.Array) -> jax.Array:
            return state.apply_fn(state.variables(), inputs, train=False)

        def to_model(pixels: jax.Array) -> jax.Array:
            return space.to_model(pixels, constants)

        def from_normalized(inputs: jax.Array) -> jax.Array:
            return space.from_normalized(inputs, constants)

        def attacked(x: jax.Array, to_model: Callable[[jax.Array], jax.Array]) -> jax.Array:
            def loss(x: jax.Array) -> jax.Array:
                logits = logits_of(to_model(x))
                return bce_loss(logits, jax.nn.one_hot(batch["label"], logits.shape[-1]))
            return x + epsilon * jnp.sign(jax.grad(loss)(x))

        pixels = space.to_pixels(batch["image"])
        if attack_space == "normalized":
            return logits_of(from_normalized(attacked(space.normalized(pixels),
                                                      from_normalized)))
        return logits_of(to_model(space.clip(attacked(pixels, to_model))))

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
                    mesh: Mesh, *constants: Any) -> np.ndarray:
    """`fn` (already `parallel.make_per_example_fn`-ed) over the whole split, padding dropped;
    `constants`, if any, passed to it after the batch."""
    outputs = []
    for batch in eval_batches(dataset, batch_size):
        mask = batch.pop("mask")
        out = fn(state, parallel.shard_batch(parallel.process_share(batch), mesh), *constants)
        outputs.append((out, mask))
    return np.concatenate([np.asarray(parallel.to_host(out))[mask > 0] for out, mask in outputs])


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """config.eval: ece_bins, fgsm_epsilon (0 = skip), fgsm_space, spectrum_point (−1 = skip)."""

    ece_bins: int = 15
    fgsm_epsilon: float = 0.0
    fgsm_space: str = "normalized"
    spectrum_point: int = -1


@functools.lru_cache(maxsize=64)
def per_example_step(mesh: Mesh, kind: str, space: InputSpace, *args: Any) -> Callable:
    """jit(shard_map) of the per-example function `kind` ("logits", "fgsm" with (ε, attack
    space), "representation" with a mix point), built once per arguments: an evaluation
    repeated during training reuses the compiled function. A whitening `space` takes its
    constants as a third, replicated argument."""
    build = {"logits": logits_fn, "fgsm": fgsm_logits_fn, "representation": representation_fn}
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
           "full_evaluation", "logits_fn", "mean_confidence", "predict_probabilities",
           "representation_fn", "run_per_example"]
