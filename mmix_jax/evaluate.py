"""Evaluation of a trained state on a split: error, NLL, predictive confidence."""

from __future__ import annotations

import jax
import numpy as np

from typing import Callable

from jax.sharding import Mesh

from mmix_jax import parallel
from mmix_jax.data.pipeline import ArrayDataset, eval_batches
from mmix_jax.state import TrainState


@jax.jit
def _probabilities(state: TrainState, images: jax.Array) -> jax.Array:
    return jax.nn.softmax(state.apply_fn(state.variables(), images, train=False), axis=-1)


def evaluate_dataset(eval_step: Callable, state: TrainState, dataset: ArrayDataset,
                     batch_size: int, mesh: Mesh) -> dict[str, float]:
    """Accuracy, error (%) and mean NLL over every example of `dataset`.

    `eval_step` is `parallel.make_eval_step(mesh)`; batches are sharded over `mesh`.
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


def predict_probabilities(state: TrainState, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Softmax outputs [N, C] for `images`, in batches of `batch_size` (last one padded)."""
    dataset = ArrayDataset(images, np.zeros(images.shape[0], np.int32))
    outputs = [(_probabilities(state, batch["image"]), batch["mask"])
               for batch in eval_batches(dataset, batch_size)]
    return np.concatenate([np.asarray(p)[m > 0] for p, m in jax.device_get(outputs)])


def mean_confidence(probabilities: np.ndarray) -> float:
    """Mean over examples of the largest predicted class probability."""
    return float(np.mean(np.max(probabilities, axis=-1)))
