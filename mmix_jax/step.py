"""The train and eval steps: pure functions of (state, batch, rng), jit-able, no host effects.

    step = jax.jit(functools.partial(mixup_step, config=spec), donate_argnums=0)
    state, metrics = step(state, {"image": x, "label": y}, jax.random.fold_in(key, state.step))

Everything random (the mix point k, λ, the permutation, dropout) is drawn from `rng` inside the
step, so one executable serves every k and a run is reproducible from its seed. Any Flax model
whose `__call__(x, *, train, mix_layer, perm, lam)` honours the mixing contract can be used.
"""

from __future__ import annotations

import zlib
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax
from jax.experimental import checkify

from mmix_jax.losses import get_loss, nll
from mmix_jax.mixup import (
    MixDraw,
    MixSpec,
    check_mix_points,
    mix_targets,
    recording_mix_points,
    sample_mix,
)
from mmix_jax.variables import apply_training, mean_over, train_flag, variables_of, with_model_state

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


def check_batch(batch: Batch) -> tuple[jax.Array, jax.Array]:
    """(images, labels) of a labelled batch, checked: labels int [B], images [B, ...]."""
    missing = [key for key in ("image", "label") if key not in batch]
    if missing:
        raise ValueError(f"the batch has no {missing} (it has {sorted(batch)}): a labelled batch "
                         "is {'image': [B, ...], 'label': int32[B]}.")
    images, labels = batch["image"], batch["label"]
    if labels.ndim != 1 or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"batch['label'] is {labels.dtype}{list(labels.shape)}: it must hold "
                         "integer class indices [B] (not one-hot or soft targets).")
    if images.ndim == 0 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"batch['image'] has shape {images.shape} and batch['label'] "
                         f"{labels.shape}: both need the same batch size B first.")
    return images, labels


def stream_keys(names: tuple[str, ...], rng: jax.Array) -> dict[str, jax.Array]:
    """A key per RNG stream: "dropout" gets `rng` itself, any other name `rng` folded with a
    hash of the name, so that each stream draws independently and reproducibly."""
    return {name: rng if name == "dropout" else jax.random.fold_in(rng, zlib.crc32(name.encode()))
            for name in names}


def check_label_range(labels: jax.Array, config: MixSpec) -> None:
    """With `config.check_labels`, a checkify check that the labels are in [0, num_classes)."""
    if config.check_labels:
        checkify.check(jnp.all((labels >= 0) & (labels < config.num_classes)),
                       f"labels outside [0, {config.num_classes}) (MixSpec.num_classes): "
                       "min {low}, max {high}", low=jnp.min(labels), high=jnp.max(labels))


def check_logits(logits: jax.Array, labels: jax.Array, config: MixSpec) -> None:
    """The model's logits must be [B, config.num_classes] (checked while tracing)."""
    if logits.shape != (labels.shape[0], config.num_classes):
        raise ValueError(f"the model returns logits of shape {logits.shape} for a batch of "
                         f"{labels.shape[0]}, but MixSpec.num_classes = {config.num_classes}: "
                         "set num_classes to the model's number of outputs.")


def device_local(params: Any, axis_name: Optional[str]) -> Any:
    """`params` (replicated) marked as varying over `axis_name`, so that their gradient is each
    device's own and the step averages it explicitly. Without this, `shard_map(check_vma=True)`
    returns the gradient of a replicated value already summed over the axis while
    `check_vma=False` and `pmap` do not: one explicit `pmean` is right under all three."""
    if axis_name is None:
        return params
    return jax.lax.pcast(params, axis_name, to="varying")


class LossAux(NamedTuple):
    """What `mixup_loss` returns beside the loss."""

    logits: jax.Array  # the mixed forward pass's logits [B, num_classes]
    model_state: dict[str, Any]  # every non-param collection after the pass (see variables)
    sown_loss: Optional[jax.Array]  # the sum of what the model sowed into `losses`, or None


def mixup_loss(params: Any, state: Any, images: jax.Array, labels: jax.Array,
               draw: MixDraw, *, config: MixSpec,
               rngs: Optional[dict[str, jax.Array]] = None) -> tuple[jax.Array, LossAux]:
    """Loss of the mixed forward pass for given draws; returns (loss, LossAux).

    For plugging mixing into your own step: differentiate this with respect to `params`.
    `state` is any object with `apply_fn` and either a `model_state` (our TrainState) or an
    optional `batch_stats` (e.g. flax's `flax.training.train_state.TrainState`). Every
    non-param collection is updated; what the model sows into `losses` is added to the loss
    (unless `config.add_sown_losses` is False) and returned as `sown_loss`.
    """
    one_hot = jax.nn.one_hot(labels, config.num_classes, dtype=jnp.float32)
    mix_args: dict[str, Any] = {}
    targets = one_hot
    if config.mixes:
        mix_args = draw.model_kwargs(config.mix_layers, config.mixing)
        targets = mix_targets(one_hot, draw.perm, draw.lam)
    with recording_mix_points() as visited:
        logits, model_state, sown = apply_training(
            state.apply_fn, variables_of(state, params), images, rngs=rngs, **mix_args)
    if config.mixes:  # while tracing: no run-time cost
        check_mix_points(config.mix_layers, visited, state.apply_fn)
    check_logits(logits, labels, config)
    loss = get_loss(config.loss)(logits, targets)
    if sown is not None and config.add_sown_losses:
        loss = loss + sown
    return loss, LossAux(logits, model_state, sown)


def mixup_step(state: Any, batch: Batch, rng: jax.Array, *, config: MixSpec,
               axis_name: Optional[str] = None) -> tuple[Any, Metrics]:
    """One SGD step on a Manifold-Mixup batch. Pure: same inputs, same outputs.

    Args:
      state: the TrainState (params, model_state, opt_state), or flax's TrainState (with a
        `batch_stats` field if the model has BatchNorm).
      batch: {"image": f32/bf16[B, ...], "label": int32[B]}.
      rng: this step's key, e.g. fold_in(run_key, step); k, λ, perm and dropout come from it.
      config: the static MixSpec (ERM: mix_layers=(); Input Mixup: (0,)).
      axis_name: inside `jax.shard_map` (check_vma on or off) or `jax.pmap`, the data axis:
        the update follows the gradient of the global mean loss (an explicit pmean), metrics
        and BatchNorm running statistics are averaged over it, and each device permutes its
        local batch only.

    Returns:
      (new state, metrics): loss, mixed_accuracy (argmax of the mixed-input logits against the
      unmixed labels), lam, mix_layer (-1 when not mixing), grad_norm, and sown_loss when the
      model sows into `losses`.
    """
    images, labels = check_batch(batch)
    check_label_range(labels, config)
    mix_rng, dropout_rng = jax.random.split(rng)
    if axis_name is not None:  # independent dropout masks on each device
        dropout_rng = jax.random.fold_in(dropout_rng, jax.lax.axis_index(axis_name))
    draw = sample_mix(mix_rng, labels.shape[0], alpha=config.alpha,
                      mix_layers=config.mix_layers if config.mixes else (), axis_name=axis_name)
    grad_fn = jax.value_and_grad(mixup_loss, has_aux=True)
    (loss, aux), grads = grad_fn(
        device_local(state.params, axis_name), state, images, labels, draw, config=config,
        rngs=stream_keys(config.rng_streams, dropout_rng))
    accuracy = jnp.mean(jnp.argmax(aux.logits, axis=-1) == labels)
    sown = aux.sown_loss
    if axis_name is not None:
        # Each device's gradient of its local mean loss, averaged: the global mean's gradient.
        grads, loss, accuracy, sown = jax.lax.pmean((grads, loss, accuracy, sown), axis_name)
    # Per-device BatchNorm: the running statistics are averaged over devices as well.
    model_state = mean_over(aux.model_state, axis_name)
    new_state = with_model_state(state.apply_gradients(grads=grads), model_state)
    metrics = {"loss": loss, "mixed_accuracy": accuracy, "lam": draw.lam,
               "mix_layer": draw.layer, "grad_norm": optax.tree.norm(grads)}
    if sown is not None:
        metrics["sown_loss"] = sown
    return new_state, metrics


def eval_step(state: Any, batch: Batch) -> Metrics:
    """Sums over a batch of the test NLL and correct predictions (running BN statistics).

    `batch` may hold a float/bool "mask" [B] marking padding (0) so that every example of a
    test set is counted once; the caller divides the sums by "count".
    """
    images, labels = check_batch(batch)
    mask = batch.get("mask", jnp.ones(labels.shape, jnp.float32)).astype(jnp.float32)
    logits = state.apply_fn(variables_of(state, state.params), images,
                            **train_flag(state.apply_fn, False))
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    return {"nll": jnp.sum(nll(logits, labels) * mask), "correct": jnp.sum(correct * mask),
            "count": jnp.sum(mask)}
