"""From an ml_collections ConfigDict to a typed, validated RunSpec: the only reader of the dict.

`run_specs(config)` validates every key before any data is loaded or anything is compiled
(ConfigError, one line naming the key, its value and what is allowed), and returns one RunSpec
per variant. Every other module takes the typed piece it needs: DataSpec, ModelSpec, MixSpec,
OptimizerSpec, CheckpointSpec, EvalSettings, and for semi-supervised runs SemiSupervisedRun.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Iterator, Optional

import ml_collections

from mmix_jax.data.datasets import POINT_SETS, DataSpec
from mmix_jax.errors import ConfigError
from mmix_jax.evaluation import deformations, ood
from mmix_jax.evaluation.evaluate import FGSM_SPACES, EvalSettings
from mmix_jax.harness.checkpoint import CheckpointSpec
from mmix_jax.harness.config_checks import count, invalid, mix_points, positive_int
from mmix_jax.harness.data_config import data_spec
from mmix_jax.harness.semi_supervised_config import SemiSupervisedRun, semi_supervised_run
from mmix_jax.losses import LOSS_NAMES
from mmix_jax.mixup import MixSpec
from mmix_jax.models import DTYPES, MODEL_NAMES, MixableModel, ModelSpec
from mmix_jax.models.init import INIT_SCHEMES
from mmix_jax.optim import OPTIMIZERS, SCHEDULES, OptimizerSpec


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One training run, typed. `config` is the ConfigDict as a plain dict: it is stored with
    the checkpoints, which compare it on resume (checkpoint.IDENTITY_KEYS)."""

    seed: int
    num_classes: int
    batch_size: int
    eval_batch_size: int
    num_epochs: int
    log_every_steps: int
    data: DataSpec
    model: ModelSpec
    mix: MixSpec
    optimizer: OptimizerSpec
    checkpoint: CheckpointSpec
    eval: EvalSettings
    tensorboard: bool = True
    stop_after_nonfinite_steps: int = 5
    compilation_cache_dir: str = ""
    profile_dir: str = ""
    semi_supervised: Optional[SemiSupervisedRun] = None
    config: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)


def model_spec(config: ml_collections.ConfigDict) -> ModelSpec:
    """config.model (name, dtype, init, the model's own keywords) and cross_device_batch_norm."""
    options = config.model.to_dict()
    name, dtype = options.pop("name"), options.pop("dtype", "float32")
    init = options.pop("init", "he")
    if name not in MODEL_NAMES:
        raise invalid("model.name", name, f"choose one of {MODEL_NAMES}")
    if dtype not in DTYPES:
        raise invalid("model.dtype", dtype, f"choose one of {tuple(DTYPES)}")
    if init not in INIT_SCHEMES:
        raise invalid("model.init", init, f"choose one of {INIT_SCHEMES}")
    options = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items()))
    spec = ModelSpec(name, dtype, init, options)
    try:
        model = spec.build(config.num_classes)
    except TypeError as error:
        raise ConfigError(f"config.model = {config.model.to_dict()} is invalid for model "
                          f"{name!r}: {error}.") from None
    if config.get("cross_device_batch_norm", False):
        if not model.has_batch_norm:
            raise invalid("cross_device_batch_norm", True,
                           f"model {name!r} has no BatchNorm; set it to False")
        spec = dataclasses.replace(spec, cross_device_batch_norm=True)
    return spec


def build_model(config: ml_collections.ConfigDict) -> MixableModel:
    """The Flax model of `config` (validated)."""
    return model_spec(config).build(config.num_classes)


def mix_spec(config: ml_collections.ConfigDict, model: MixableModel) -> MixSpec:
    """config.mix, config.loss and config.num_classes, checked against the model's mix points."""
    if config.loss not in LOSS_NAMES:
        raise invalid("loss", config.loss, f"choose one of {LOSS_NAMES}")
    alpha = config.mix.alpha
    if not isinstance(alpha, numbers.Real) or not alpha >= 0:
        raise invalid("mix.alpha", alpha, "must be >= 0 (0 disables mixing)")
    layers = mix_points(config.mix.layers, "mix.layers", config.model.name,
                        model.num_mix_points, ", () for ERM, (0,) for Input Mixup")
    return MixSpec(num_classes=config.num_classes, alpha=float(alpha), mix_layers=layers,
                   loss=config.loss, rng_streams=model.rng_streams)


def optimizer_spec(optimizer: ml_collections.ConfigDict, num_epochs: int) -> OptimizerSpec:
    """config.optimizer; schedule (default "step") and rampdown_epochs only where set."""
    if optimizer.learning_rate <= 0:
        raise invalid("optimizer.learning_rate", optimizer.learning_rate, "must be > 0")
    spec = OptimizerSpec(
        learning_rate=float(optimizer.learning_rate), momentum=float(optimizer.momentum),
        nesterov=bool(optimizer.nesterov), weight_decay=float(optimizer.weight_decay),
        milestones=tuple(int(m) for m in optimizer.milestones),
        decay_factor=float(optimizer.decay_factor),
        schedule=str(optimizer.get("schedule", "step")),
        rampdown_epochs=float(optimizer.get("rampdown_epochs", 0.0)),
        warmup_epochs=float(optimizer.get("warmup_epochs", 0.0)),
        name=str(optimizer.get("name", "sgd")), b1=float(optimizer.get("b1", 0.9)),
        b2=float(optimizer.get("b2", 0.999)))
    if spec.name not in OPTIMIZERS:
        raise invalid("optimizer.name", spec.name, f"choose one of {OPTIMIZERS}")
    if not 0 <= spec.warmup_epochs < num_epochs:
        raise invalid("optimizer.warmup_epochs", spec.warmup_epochs,
                      f"must be in [0, num_epochs = {num_epochs})")
    if spec.schedule not in SCHEDULES:
        raise invalid("optimizer.schedule", spec.schedule, f"choose one of {SCHEDULES}")
    if spec.schedule == "cosine" and spec.rampdown_epochs < num_epochs:
        raise invalid("optimizer.rampdown_epochs", spec.rampdown_epochs,
                      f"the cosine ramp-down must end at or after the last epoch ({num_epochs}; "
                      "ICT uses about 10 % more)")
    return spec


def checkpoint_spec(config: ml_collections.ConfigDict, has_validation: bool) -> CheckpointSpec:
    """config.checkpoint; best_metric "auto" is the validation accuracy with a validation split,
    else the test accuracy (kept, never reported). With a validation split the kept best
    checkpoint is the one reported as "validation selected", so its metric must be val_*."""
    ckpt = config.get("checkpoint") or ml_collections.ConfigDict()
    best = ckpt.get("best_metric", "test_accuracy") or ""
    if best == "auto":
        best = "val_accuracy" if has_validation else "test_accuracy"
    if has_validation and not best.startswith("val_"):
        raise invalid("checkpoint.best_metric", best,
                       "the best checkpoint is chosen on the validation split, so set "
                       "'val_accuracy' (best_mode 'max') or 'val_nll' (best_mode 'min')")
    spec = CheckpointSpec(every_steps=int(ckpt.get("every_steps", 0) or 0),
                          every_epochs=int(ckpt.get("every_epochs", 0) or 1),
                          keep=int(ckpt.get("keep", 3)), best_metric=best,
                          best_mode=ckpt.get("best_mode", "max"),
                          async_save=bool(ckpt.get("async_save", True)))
    if spec.keep <= 0 or spec.every_epochs <= 0 or spec.every_steps < 0:
        raise ConfigError(f"config.checkpoint = {spec}: keep and every_epochs must be > 0, "
                          "every_steps >= 0.")
    if spec.best_mode not in ("max", "min"):
        raise invalid("checkpoint.best_mode", spec.best_mode, "choose 'max' or 'min'")
    return spec


def eval_settings(config: ml_collections.ConfigDict) -> EvalSettings:
    section = config.get("eval") or {}
    defaults = EvalSettings()

    def get(key: str, kind: type = str) -> Any:
        return kind(section.get(key, getattr(defaults, key)))

    settings = EvalSettings(
        ece_bins=get("ece_bins", int), fgsm_epsilon=get("fgsm_epsilon", float),
        fgsm_space=get("fgsm_space"), spectrum_point=get("spectrum_point", int),
        deformations=tuple(str(d) for d in get("deformations", tuple)),
        rotation_angles=tuple(float(a) for a in get("rotation_angles", tuple)),
        ood_sets=tuple(str(o) for o in get("ood_sets", tuple)),
        ood_examples=positive_int(section.get("ood_examples", defaults.ood_examples),
                                  "eval.ood_examples"),
        pgd_steps=tuple(positive_int(n, "eval.pgd_steps") for n in get("pgd_steps", tuple)),
        pgd_step_factor=get("pgd_step_factor", float),
        pgd_random_start=get("pgd_random_start", bool),
        pgd_examples=positive_int(section.get("pgd_examples", defaults.pgd_examples),
                                  "eval.pgd_examples"),
        seed=get("seed", int))
    if settings.fgsm_space not in FGSM_SPACES:
        raise invalid("eval.fgsm_space", settings.fgsm_space, f"choose one of {FGSM_SPACES}")
    for name in settings.deformations:
        try:
            deformations.parse(name)
        except ValueError as error:
            raise ConfigError(f"config.eval.deformations: {error}") from None
    for name in settings.ood_sets:
        ood.check_name(name)
    if settings.pgd_steps and (settings.fgsm_epsilon <= 0 or settings.pgd_step_factor <= 0):
        raise ConfigError(f"config.eval.pgd_steps = {settings.pgd_steps} needs "
                          f"eval.fgsm_epsilon > 0 (PGD attacks with FGSM's ε; it is "
                          f"{settings.fgsm_epsilon}) and eval.pgd_step_factor > 0 (it is "
                          f"{settings.pgd_step_factor}).")
    return settings


def checked_for_data(settings: EvalSettings, data: DataSpec) -> EvalSettings:
    """Refuses deformations and out-of-distribution sets for data that are not images."""
    if data.name in POINT_SETS and (settings.deformations or settings.rotation_angles
                                   or settings.ood_sets):
        raise ConfigError("config.eval.deformations, rotation_angles and ood_sets need image "
                          f"data; config.data.name = {data.name!r} has 2-D points. Leave them "
                          "empty for it.")
    return settings


def run_spec(config: ml_collections.ConfigDict) -> RunSpec:
    """The typed RunSpec of a single (variant-free) config; ConfigError names a bad key."""
    num_classes = config.num_classes
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) \
            or num_classes <= 1:
        raise invalid("num_classes", num_classes, "must be an integer >= 2")
    data = data_spec(config.data, num_classes)
    sizes = {key: positive_int(config[key], key)
             for key in ("batch_size", "eval_batch_size", "num_epochs", "log_every_steps")}
    model = model_spec(config)
    semi_supervised = semi_supervised_run(config, model.build(num_classes))
    if semi_supervised is not None:
        data = dataclasses.replace(data, unlabeled=True)
    return RunSpec(
        semi_supervised=semi_supervised,
        seed=int(config.seed), num_classes=int(num_classes), data=data, model=model,
        mix=(mix_spec(config, model.build(num_classes)) if semi_supervised is None
             else semi_supervised.spec.supervised_mix_spec),
        optimizer=optimizer_spec(config.optimizer, int(config.num_epochs)),
        checkpoint=checkpoint_spec(config, data.validation_per_class > 0),
        eval=checked_for_data(eval_settings(config), data),
        tensorboard=bool(config.get("tensorboard", True)),
        stop_after_nonfinite_steps=count(config.get("stop_after_nonfinite_steps", 5),
                                         "stop_after_nonfinite_steps", "0 never stops"),
        compilation_cache_dir=config.get("compilation_cache_dir", "") or "",
        profile_dir=config.get("profile_dir", "") or "", config=config.to_dict(), **sizes)


def _merge(config: ml_collections.ConfigDict, overrides: ml_collections.ConfigDict,
           prefix: str) -> None:
    for key, value in overrides.items():
        if key not in config:
            raise invalid(f"{prefix}.{key}", value, "overrides a key the config does not have")
        if isinstance(value, ml_collections.ConfigDict):
            _merge(config[key], value, f"{prefix}.{key}")
        else:
            config[key] = value


def variants(config: ml_collections.ConfigDict) -> Iterator[tuple[str, ml_collections.ConfigDict]]:
    """(name, config) for each entry of config.variants (overrides), or ("", config) if none."""
    named = config.get("variants") or {}
    if not named:
        yield "", config
        return
    for name, overrides in named.items():
        single = ml_collections.ConfigDict(config.to_dict())
        single.variants = ml_collections.ConfigDict()
        _merge(single, overrides, f"variants.{name}")
        yield name, single


def run_specs(config: ml_collections.ConfigDict) -> list[tuple[str, RunSpec]]:
    """(name, RunSpec) per variant ("" without variants); ConfigError names the variant too."""
    specs = []
    for name, single in variants(config):
        try:
            specs.append((name, run_spec(single)))
        except ConfigError as error:
            if not name:
                raise
            raise ConfigError(f"variant {name!r}: {error}") from None
    return specs


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError for the first invalid key of `config` or of any of its variants."""
    run_specs(config)


__all__ = ["ConfigError", "RunSpec", "build_model", "check_config", "run_spec", "run_specs",
           "variants"]
