"""config.semi_supervised, read and validated: a SemiSupervisedRun (the step's spec, the ramp in
epochs, the unlabelled batch size), or None for a supervised run."""

from __future__ import annotations

import dataclasses
import numbers
from typing import Optional

import ml_collections

from mmix_jax.errors import ConfigError
from mmix_jax.harness.config_checks import invalid, mix_points, positive_int
from mmix_jax.models import MixableModel
from mmix_jax.semi_supervised import TARGET_KINDS, SemiSupervisedSpec


@dataclasses.dataclass(frozen=True)
class SemiSupervisedRun:
    """config.semi_supervised, typed: the step's spec (its rampup_steps set once the number of
    updates per epoch is known), the ramp length in epochs and the unlabelled batch size."""

    spec: SemiSupervisedSpec
    rampup_epochs: float
    unlabeled_batch_size: int

    def step_spec(self, steps_per_epoch: int) -> SemiSupervisedSpec:
        return dataclasses.replace(self.spec,
                                   rampup_steps=round(self.rampup_epochs * steps_per_epoch))

    @property
    def evaluates_teacher(self) -> bool:
        """ICT evaluates (and selects on) the mean teacher, as its authors' code does."""
        return self.spec.uses_teacher


def semi_supervised_run(config: ml_collections.ConfigDict, model: MixableModel
                        ) -> Optional[SemiSupervisedRun]:
    """config.semi_supervised (None or empty: a supervised run), validated."""
    section = config.get("semi_supervised")
    if not section:
        return None
    if not config.data.get("labels_per_class"):
        raise invalid("data.labels_per_class", config.data.get("labels_per_class"),
                       "a semi-supervised run needs the number of labelled images per class")
    if section.targets not in TARGET_KINDS:
        raise invalid("semi_supervised.targets", section.targets, f"choose one of {TARGET_KINDS}")
    for key in ("supervised_alpha", "unsupervised_alpha", "unsupervised_weight_max",
                "rampup_epochs"):
        value = section[key]
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
            raise invalid(f"semi_supervised.{key}", value, "must be a number >= 0")
    if section.rampup_epochs > config.num_epochs:
        raise invalid("semi_supervised.rampup_epochs", section.rampup_epochs,
                       f"must be at most num_epochs = {config.num_epochs}")
    decay = section.ema_decay
    if not isinstance(decay, numbers.Real) or not 0 <= decay < 1:
        raise invalid("semi_supervised.ema_decay", decay, "must be in [0, 1)")
    name, points = config.model.name, model.num_mix_points
    spec_args = dict(
        num_classes=config.num_classes, rampup_steps=0, targets=section.targets,
        supervised_alpha=float(section.supervised_alpha),
        supervised_layers=mix_points(section.supervised_layers,
                                      "semi_supervised.supervised_layers", name, points),
        unsupervised_alpha=float(section.unsupervised_alpha),
        unsupervised_layers=mix_points(section.unsupervised_layers,
                                        "semi_supervised.unsupervised_layers", name, points),
        unsupervised_weight_max=float(section.unsupervised_weight_max),
        ema_decay=float(decay), rng_streams=model.rng_streams,
        # keys a config may omit: SemiSupervisedSpec's defaults apply
        **{key: str(section[key]) for key in ("batch_norm_passes", "target_gradient")
           if key in section})
    try:
        spec = SemiSupervisedSpec(**spec_args)
    except ValueError as error:
        raise ConfigError(f"config.semi_supervised is invalid: {error}") from None
    return SemiSupervisedRun(
        spec, float(section.rampup_epochs),
        positive_int(section.unlabeled_batch_size, "semi_supervised.unlabeled_batch_size"))


__all__ = ["SemiSupervisedRun", "semi_supervised_run"]
