"""The static description of a semi-supervised step (SemiSupervisedSpec) and its formulas: the
unlabelled weight's ramp-up, the mean teacher's decay and the consistency loss
(mmix_jax.semi_supervised documents the method; this module holds what its step is given)."""

from __future__ import annotations

import dataclasses
from typing import Union

import chex
import jax
import jax.numpy as jnp

from mmix_jax.errors import static_number, static_points
from mmix_jax.mixup import MixSpec

TARGET_KINDS = ("self", "mean_teacher")
BATCH_NORM_PASSES = ("step", "authors")
TARGET_GRADIENTS = ("stop", "through")


@dataclasses.dataclass(frozen=True)
class SemiSupervisedSpec:
    """Static description of a semi-supervised step (hashable: a jit static argument).

    Attributes:
      num_classes: number of classes.
      rampup_steps: updates over which t rises from 0 to 1 in w(t) (0: w = w_max throughout).
      targets: "self" (Manifold Mixup's own-network targets) or "mean_teacher" (ICT).
      supervised_alpha / supervised_layers: Beta(α, α) and mix points of the labelled term.
      unsupervised_alpha / unsupervised_layers: the same for the unlabelled term.
      unsupervised_weight_max: w_max. 0 gives the labelled-only baseline (no unlabelled passes).
      ema_decay: the mean teacher's decay (used with targets "mean_teacher").
      mixing: "auto", "select" or "branch", for both terms (`MixSpec.mixing`).
      batch_norm_passes: "step" or "authors": which train-mode passes update the BatchNorm
        running statistics, in which order (the module docstring).
      target_gradient: "stop" (the paper's: the targets are constants) or "through" (targets
        "self" only: the loss is differentiated through the targets too, so the update descends
        a fixed objective; the stopped-gradient update can diverge without BatchNorm).
      rng_streams / check_labels: as in `MixSpec`, for every pass of the step.
    """

    num_classes: int
    rampup_steps: int
    targets: str = "self"
    supervised_alpha: float = 0.1
    supervised_layers: tuple[int, ...] = (0, 1, 2)
    unsupervised_alpha: float = 2.0
    unsupervised_layers: tuple[int, ...] = (0, 1, 2)
    unsupervised_weight_max: float = 1.0
    ema_decay: float = 0.999
    mixing: str = "auto"
    batch_norm_passes: str = "step"
    target_gradient: str = "stop"
    rng_streams: tuple[str, ...] = ("dropout",)
    check_labels: bool = False

    def __post_init__(self):
        owner = "SemiSupervisedSpec"
        for name in ("supervised_layers", "unsupervised_layers"):
            object.__setattr__(self, name, static_points(owner, name, getattr(self, name)))
        for name, minimum, integer in (("num_classes", 2, True), ("rampup_steps", 0, True),
                                       ("supervised_alpha", 0, False),
                                       ("unsupervised_alpha", 0, False),
                                       ("unsupervised_weight_max", 0, False),
                                       ("ema_decay", 0, False)):
            object.__setattr__(self, name, static_number(owner, name, getattr(self, name),
                                                         minimum=minimum, integer=integer))
        if self.targets not in TARGET_KINDS:
            raise ValueError(f"SemiSupervisedSpec.targets = {self.targets!r}: choose one of "
                             f"{TARGET_KINDS}.")
        if self.batch_norm_passes not in BATCH_NORM_PASSES:
            raise ValueError(f"SemiSupervisedSpec.batch_norm_passes = {self.batch_norm_passes!r}: "
                             f"choose one of {BATCH_NORM_PASSES}.")
        if self.target_gradient not in TARGET_GRADIENTS:
            raise ValueError(f"SemiSupervisedSpec.target_gradient = {self.target_gradient!r}: "
                             f"choose one of {TARGET_GRADIENTS}.")
        if self.target_gradient == "through" and self.targets != "self":
            raise ValueError("SemiSupervisedSpec.target_gradient = 'through' needs targets "
                             "'self' (a mean teacher is not trained by the gradient).")
        if self.rampup_steps < 0:
            raise ValueError(
                f"SemiSupervisedSpec.rampup_steps = {self.rampup_steps}: must be >= 0.")
        if not self.unsupervised_weight_max >= 0:
            raise ValueError("SemiSupervisedSpec.unsupervised_weight_max = "
                             f"{self.unsupervised_weight_max}: must be >= 0.")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"SemiSupervisedSpec.ema_decay = {self.ema_decay}: must be in [0, 1).")
        if self.uses_unlabeled and not (self.unsupervised_layers and self.unsupervised_alpha > 0):
            raise ValueError("SemiSupervisedSpec: the unlabelled term needs mix points and "
                             "unsupervised_alpha > 0 (or set unsupervised_weight_max = 0).")
        # validates the supervised α, points and streams
        object.__setattr__(self, "rng_streams", self.supervised_mix_spec.rng_streams)

    @property
    def uses_unlabeled(self) -> bool:
        """Whether the step computes the unlabelled term (False for the labelled-only baseline)."""
        return self.unsupervised_weight_max > 0

    @property
    def uses_teacher(self) -> bool:
        """Whether the state must carry a mean teacher (`with_teacher`)."""
        return self.uses_unlabeled and self.targets == "mean_teacher"

    @property
    def supervised_mix_spec(self) -> MixSpec:
        """The labelled term as a supervised MixSpec (cross-entropy against mixed targets)."""
        return MixSpec(num_classes=self.num_classes, alpha=self.supervised_alpha,
                       mix_layers=self.supervised_layers, loss="soft_ce", mixing=self.mixing,
                       rng_streams=self.rng_streams, check_labels=self.check_labels)


def unsupervised_weight(step: Union[int, jax.Array], config: SemiSupervisedSpec) -> jax.Array:
    """w(t) = w_max · exp(−5 (1 − t)²), t = min(step / rampup_steps, 1), as float32."""
    if config.rampup_steps == 0:
        return jnp.asarray(config.unsupervised_weight_max, jnp.float32)
    t = jnp.clip(jnp.asarray(step, jnp.float32) / config.rampup_steps, 0.0, 1.0)
    return config.unsupervised_weight_max * jnp.exp(-5.0 * jnp.square(1.0 - t))


def teacher_decay(new_step: jax.Array, ema_decay: float) -> jax.Array:
    """ICT's decay after update `new_step` (1, 2, ...): the plain average of all weights so far
    while that is the longer memory, min(1 − 1/(new_step + 1), ema_decay)."""
    return jnp.minimum(1.0 - 1.0 / (jnp.asarray(new_step, jnp.float32) + 1.0), ema_decay)


def consistency_loss(logits: jax.Array, targets: jax.Array, kind: str) -> jax.Array:
    """Mean over batch × classes of the squared difference: of logits ("self"), of softmaxes
    ("mean_teacher"). `targets` are already mixed; any gradient they carry is kept."""
    chex.assert_equal_shape((logits, targets))
    logits, targets = logits.astype(jnp.float32), targets.astype(jnp.float32)
    if kind == "mean_teacher":
        logits, targets = jax.nn.softmax(logits), jax.nn.softmax(targets)
    return jnp.mean(jnp.square(logits - targets))


__all__ = ["BATCH_NORM_PASSES", "SemiSupervisedSpec", "TARGET_GRADIENTS", "TARGET_KINDS",
           "consistency_loss", "teacher_decay", "unsupervised_weight"]
