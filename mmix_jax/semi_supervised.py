"""Semi-supervised Manifold Mixup (Verma et al. 2019, §5) and ICT in one pure step.

Each update sees a labelled batch and an unlabelled batch:

    loss = L_sup + w(t) · L_unsup,    w(t) = w_max · exp(−5 (1 − t)²),
    t = min(step / rampup_steps, 1)   (the authors ramp over the first 40 % of updates)

L_sup is Manifold Mixup on the labelled batch with cross-entropy against the mixed one-hot
targets, λ·CE(y_a) + (1 − λ)·CE(y_b). L_unsup is a mixing-consistency loss on the unlabelled
batch u: targets ŷ for u carry no gradient (unless `target_gradient`, below); a fresh k′, λ′
and permutation mix u at k′ and the output is pulled towards λ′·ŷ + (1 − λ′)·ŷ[perm]:

- targets "self" (the Manifold Mixup paper): ŷ = logits of the same network in train mode
  (dropout on, BatchNorm batch statistics); L_unsup = mean over batch × classes of the squared
  difference of logits. The targets are constants (the paper's); with `target_gradient =
  "through"` the loss is also differentiated through them, so the update descends a fixed
  objective (the stopped-gradient update can diverge without BatchNorm, docs §4).
- targets "mean_teacher" (ICT): ŷ = logits of the mean teacher (an exponential moving average
  of the weights, kept in `state.teacher`) in train mode; the mixed logits are passed through a
  softmax and L_unsup = mean squared difference of the student's and the target's softmax
  (ICT's `softmax_mse_loss` on mixed teacher logits).

BatchNorm running statistics (`batch_norm_passes`): "step" (default) updates them in the order
the step computes its train-mode passes: the targets on the clean unlabelled batch, the mixed
labelled batch, the mixed unlabelled batch; the running statistics end on a mixed batch.
"authors" follows the authors' semi-supervised update (main_mixup_hidden_ssl.py, 8d359f1),
which runs five train-mode passes: the mixed labelled batch, the clean unlabelled batch (the
targets), the mixed unlabelled batch, then, after the optimiser step and with the new weights,
the clean labelled batch and the clean unlabelled batch (their accuracy logging); the running
statistics end on clean data. With the authors' last BatchNorm (PyTorch momentum 0.9) the
statistics used at evaluation are essentially the last clean unlabelled batch's. The two extra
forward passes cost about a quarter of a step. With mean-teacher targets the targets pass
updates the teacher's statistics, so only the two passes after the step differ.

The authors' code also adds 0.001 × the L1 norm of the network's first parameter tensor (its
`l1_loss` returns after the first tensor); that looks like a bug and is not reproduced.

Everything random comes from `rng`: the supervised term uses `split(rng)[0]` exactly as
`mixup_step` does, so with w_max = 0 (the labelled-only baseline, unlabelled passes skipped)
the update is `mixup_step`'s with cross-entropy.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Union, cast

import chex
import jax
import jax.numpy as jnp
import optax

from mmix_jax.mixup import MixDraw, check_mix_points, mix, recording_mix_points, sample_mix
from mmix_jax.semi_supervised_spec import (
    BATCH_NORM_PASSES,
    TARGET_KINDS,
    SemiSupervisedSpec,
    consistency_loss,
    teacher_decay,
    unsupervised_weight,
)
from mmix_jax.state import TrainState
from mmix_jax.step import (
    Batch,
    Metrics,
    check_batch,
    check_label_range,
    device_local,
    mixup_loss,
    stream_keys,
)
from mmix_jax.variables import apply_training, mean_over


class Draws(NamedTuple):
    """All random choices of one semi-supervised step (on one shard)."""

    supervised: MixDraw
    unsupervised: Optional[MixDraw]  # None when the step has no unlabelled term
    dropout: dict[str, jax.Array]  # keys "supervised", "targets", "unsupervised"


def draws(rng: jax.Array, config: SemiSupervisedSpec, labeled_size: int, unlabeled_size: int,
          *, axis_name: Optional[str] = None, shard_index: Optional[Union[int, jax.Array]] = None) -> Draws:
    """The step's draws from its key: the supervised ones from split(rng)[0] exactly as
    `mixup_step` draws them, the unlabelled ones from split(rng)[1]. Per-shard permutations
    and dropout keys fold in the shard's index (`axis_name` inside shard_map, or `shard_index`)."""
    if axis_name is not None:
        shard_index = jax.lax.axis_index(axis_name)

    def per_shard(key: jax.Array) -> jax.Array:
        return key if shard_index is None else jax.random.fold_in(key, shard_index)

    sup_spec = config.supervised_mix_spec
    sup_rng, unsup_rng = jax.random.split(rng)
    mix_rng, dropout_rng = jax.random.split(sup_rng)
    supervised = sample_mix(mix_rng, labeled_size, alpha=sup_spec.alpha,
                            mix_layers=sup_spec.mix_layers if sup_spec.mixes else (),
                            shard_index=shard_index)
    target_rng, unsup_mix_rng, unsup_dropout_rng = jax.random.split(unsup_rng, 3)
    unsupervised = None
    if config.uses_unlabeled:
        unsupervised = sample_mix(unsup_mix_rng, unlabeled_size, alpha=config.unsupervised_alpha,
                                  mix_layers=config.unsupervised_layers, shard_index=shard_index)
    dropout = {"supervised": per_shard(dropout_rng), "targets": per_shard(target_rng),
               "unsupervised": per_shard(unsup_dropout_rng)}
    return Draws(supervised, unsupervised, dropout)


def clean_passes(state: TrainState, batches: tuple[jax.Array, ...], drawn: Draws,
                 streams: tuple[str, ...], axis_name: Optional[str]) -> TrainState:
    """The authors' train-mode passes after the update, on each clean batch in turn: only the
    model state (BatchNorm's running statistics) changes, averaged over `axis_name`."""
    model_state = state.model_state
    for index, batch in enumerate(batches):
        key = jax.random.fold_in(drawn.dropout["targets"], index + 1)
        _, model_state, _ = apply_training(state.apply_fn, {"params": state.params, **model_state},
                                          batch, rngs=stream_keys(streams, key))
    return state.replace(model_state=mean_over(model_state, axis_name))


def ssl_mixup_step(state: TrainState, labeled: Batch, unlabeled: Batch, rng: jax.Array, *,
                   config: SemiSupervisedSpec, axis_name: Optional[str] = None
                   ) -> tuple[TrainState, Metrics]:
    """One SGD step of semi-supervised Manifold Mixup or ICT. Pure: same inputs, same outputs.

    Args:
      state: a TrainState; with targets "mean_teacher" it must carry a teacher (`with_teacher`).
      labeled: {"image": [B, ...], "label": int32[B]}; unlabeled: {"image": [B′, ...]}.
      rng: this step's key; every draw (both k, λ, permutations, dropout) comes from it
        (`draws` says how).
      config: the static SemiSupervisedSpec. The weight w(t) is computed from `state.step`
        inside, so one executable serves every step of the ramp and every k.
      axis_name: inside `shard_map`, the data axis (as for `mixup_step`): gradients, metrics
        and BatchNorm statistics averaged over it, permutations within each device's batch.

    Returns:
      (new state, metrics): loss, supervised_loss, unsupervised_loss, unsupervised_weight,
      mixed_accuracy (mixed labelled logits against the labels), lam, mix_layer, grad_norm.
    """
    images, labels = check_batch(labeled)
    check_label_range(labels, config.supervised_mix_spec)
    if "image" not in unlabeled:
        raise ValueError(f"the unlabelled batch has no 'image' (it has {sorted(unlabeled)}).")
    unlabeled_images = unlabeled["image"]
    chex.assert_equal(unlabeled_images.shape[1:], images.shape[1:])
    if config.uses_teacher and state.teacher is None:
        raise ValueError("targets 'mean_teacher' need a teacher in the state: "
                         "state = mmix_jax.with_teacher(state).")
    sup_spec = config.supervised_mix_spec
    drawn = draws(rng, config, labels.shape[0], unlabeled_images.shape[0], axis_name=axis_name)
    sup_draw = drawn.supervised
    unsup_draw = cast(MixDraw, drawn.unsupervised)  # None only when the unlabelled term is off
    streams = config.rng_streams
    sup_rngs = stream_keys(streams, drawn.dropout["supervised"])
    weight = unsupervised_weight(state.step, config)
    model_state, teacher = state.model_state, state.teacher

    authors_order = config.batch_norm_passes == "authors"
    through = config.uses_unlabeled and config.target_gradient == "through"
    targets_first = config.uses_unlabeled and not through and not (
        authors_order and config.targets == "self")
    if config.uses_unlabeled:
        target_rngs = stream_keys(streams, drawn.dropout["targets"])
        unsup_rngs = stream_keys(streams, drawn.dropout["unsupervised"])

    def own_targets(variables: dict) -> tuple[jax.Array, Any]:
        """The network's own (train-mode) logits on the clean unlabelled batch, mixed, without
        gradient unless `through`; and the model state after that pass."""
        if not through:  # constant variables make the logits constant too
            variables = jax.lax.stop_gradient(variables)
        raw, updated, _ = apply_training(state.apply_fn, variables, unlabeled_images,
                                         rngs=target_rngs)
        return mix(raw.astype(jnp.float32), unsup_draw.perm, unsup_draw.lam), updated

    if targets_first:
        if config.targets == "mean_teacher":
            raw_targets, teacher_state, _ = apply_training(
                state.apply_fn, state.teacher_variables(), unlabeled_images, rngs=target_rngs)
            teacher = dict(teacher, model_state=teacher_state)
            mixed_targets = mix(jax.lax.stop_gradient(raw_targets).astype(jnp.float32),
                                unsup_draw.perm, unsup_draw.lam)
        else:
            mixed_targets, model_state = own_targets(state.variables())

    def loss_fn(params):
        current, targets = model_state, mixed_targets if targets_first else None
        if through and not authors_order:  # the step's order: the targets' pass first
            targets, current = own_targets({"params": params, **current})
        sup_loss, aux = mixup_loss(params, state.replace(model_state=current), images, labels,
                                   sup_draw, config=sup_spec, rngs=sup_rngs)
        current = aux.model_state
        if not config.uses_unlabeled:
            return sup_loss, (sup_loss, jnp.zeros((), jnp.float32), aux.logits, current)
        if targets is None:  # the authors' order: the targets after the labelled pass
            targets, current = own_targets({"params": params, **current})
        with recording_mix_points() as visited:
            unsup_logits, current, _ = apply_training(
                state.apply_fn, {"params": params, **current}, unlabeled_images,
                rngs=unsup_rngs, **unsup_draw.model_kwargs(config.unsupervised_layers,
                                                           config.mixing))
        check_mix_points(config.unsupervised_layers, visited, state.apply_fn)
        unsup_loss = consistency_loss(unsup_logits, targets, config.targets)
        return sup_loss + weight * unsup_loss, (sup_loss, unsup_loss, aux.logits, current)

    (loss, (sup_loss, unsup_loss, logits, model_state)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(device_local(state.params, axis_name))
    accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == labels)
    if axis_name is not None:  # as in mixup_step: per-device gradients, averaged explicitly
        grads, loss, sup_loss, unsup_loss, accuracy = jax.lax.pmean(
            (grads, loss, sup_loss, unsup_loss, accuracy), axis_name)
        if config.uses_teacher:  # the teacher's BatchNorm statistics, as the student's
            teacher = dict(teacher, model_state=mean_over(teacher["model_state"], axis_name))
    new_state = state.apply_gradients(grads=grads).replace(
        model_state=mean_over(model_state, axis_name))
    if authors_order and model_state:
        new_state = clean_passes(new_state, (images, unlabeled_images), drawn, streams,
                                 axis_name)
    if config.uses_teacher:
        decay = teacher_decay(new_state.step, config.ema_decay)
        teacher = dict(teacher, params=jax.tree.map(
            lambda t, p: decay * t + (1 - decay) * p, teacher["params"], new_state.params))
    new_state = new_state.replace(teacher=teacher)
    metrics = {"loss": loss, "supervised_loss": sup_loss, "unsupervised_loss": unsup_loss,
               "unsupervised_weight": weight, "mixed_accuracy": accuracy, "lam": sup_draw.lam,
               "mix_layer": sup_draw.layer, "grad_norm": optax.tree.norm(grads)}
    return new_state, metrics



def paired_ssl_step(config: SemiSupervisedSpec) -> Callable[..., tuple[TrainState, Metrics]]:
    """`ssl_mixup_step` over one batch {"labeled": ..., "unlabeled": ...}: the form that
    `parallel.make_train_step` shards (with `parallel.each_part` for the preprocessing)."""

    def step(state: TrainState, batch: dict[str, Batch], rng: jax.Array, *,
             axis_name: Optional[str] = None) -> tuple[TrainState, Metrics]:
        return ssl_mixup_step(state, batch["labeled"], batch["unlabeled"], rng, config=config,
                              axis_name=axis_name)

    return step


__all__ = ["BATCH_NORM_PASSES", "Draws", "SemiSupervisedSpec", "TARGET_KINDS", "clean_passes",
           "consistency_loss", "draws", "paired_ssl_step", "ssl_mixup_step",
           "teacher_decay", "unsupervised_weight"]
