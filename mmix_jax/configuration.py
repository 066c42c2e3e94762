"""From an ml_collections ConfigDict to validated objects: model, MixSpec, variants.

`check_config` runs before any data is loaded or anything is compiled, and raises ConfigError
with one line naming the key, its value and what is allowed.
"""

from __future__ import annotations

import numbers
from typing import Any, Iterator

import jax.numpy as jnp
import ml_collections

from mmix_jax.data import DATASET_NAMES, IMAGE_SOURCES, NORMALIZATIONS, NPZ
from mmix_jax.errors import ConfigError
from mmix_jax.evaluate import FGSM_SPACES
from mmix_jax.losses import LOSS_NAMES
from mmix_jax.mixup import MixSpec
from mmix_jax.parallel import DATA_AXIS
from mmix_jax.models import MODEL_NAMES, MixableModel, get_model
from mmix_jax.models.init import INIT_SCHEMES

# Models with BatchNorm layers (statistics per device, or across devices on request).
BATCH_NORM_MODELS = ("preactresnet18", "preactresnet34", "preactresnet50", "preactresnet101",
                     "preactresnet152", "wrn", "wrn28_10", "wrn28_10_standard")

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _invalid(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"config.{key} = {value!r} is invalid: {allowed}.")


def _positive_int(config: ml_collections.ConfigDict, key: str) -> None:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise _invalid(key, value, "must be a positive integer")


def build_model(config: ml_collections.ConfigDict) -> MixableModel:
    """The Flax model of `config.model` (name, dtype and the model's own keyword arguments)."""
    kwargs = config.model.to_dict()
    name = kwargs.pop("name")
    dtype = kwargs.pop("dtype", "float32")
    kwargs.pop("init", None)  # how parameters are drawn: create_train_state's business
    if name not in MODEL_NAMES:
        raise _invalid("model.name", name, f"choose one of {MODEL_NAMES}")
    if dtype not in DTYPES:
        raise _invalid("model.dtype", dtype, f"choose one of {tuple(DTYPES)}")
    if config.get("cross_device_batch_norm"):
        if name not in BATCH_NORM_MODELS:
            raise _invalid("cross_device_batch_norm", True,
                           f"model {name!r} has no BatchNorm; set it to False")
        kwargs["bn_axis"] = DATA_AXIS
    try:
        return get_model(name, num_classes=config.num_classes, dtype=DTYPES[dtype], **kwargs)
    except TypeError as error:
        raise ConfigError(f"config.model = {config.model.to_dict()} is invalid for model {name!r}: "
                          f"{error}.") from None


def init_scheme(config: ml_collections.ConfigDict) -> str:
    """config.model.init: "he" (the model's own initialisers) or "torch" (PyTorch's defaults)."""
    return config.model.get("init", "he")


def mix_spec(config: ml_collections.ConfigDict) -> MixSpec:
    """The train step's static MixSpec from config.mix, config.loss and config.num_classes."""
    return MixSpec(num_classes=config.num_classes, alpha=float(config.mix.alpha),
                   mix_layers=tuple(config.mix.layers), loss=config.loss)


def _merge(config: ml_collections.ConfigDict, overrides: ml_collections.ConfigDict,
           prefix: str) -> None:
    for key, value in overrides.items():
        if key not in config:
            raise _invalid(f"{prefix}.{key}", value, "overrides a key the config does not have")
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


def _check_single(config: ml_collections.ConfigDict) -> None:
    if config.data.name not in DATASET_NAMES:
        raise _invalid("data.name", config.data.name, f"choose one of {DATASET_NAMES}")
    num_classes = config.num_classes
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) \
            or num_classes <= 1:
        raise _invalid("num_classes", num_classes, "must be an integer >= 2")
    source = IMAGE_SOURCES.get(config.data.name)
    if source is not None and num_classes != source.num_classes:
        raise _invalid("num_classes", num_classes,
                       f"{config.data.name} has {source.num_classes} classes")
    if config.data.name == NPZ and not config.data.get("path"):
        raise _invalid("data.path", config.data.get("path"), "give the .npz file to read")
    if source is not None or config.data.name == NPZ:
        padding = config.data.get("crop_padding", 0)
        if not isinstance(padding, numbers.Integral) or padding < 0:
            raise _invalid("data.crop_padding", padding, "must be an integer >= 0 (0: no crop)")
        per_class = config.data.get("labels_per_class", 0)
        if not isinstance(per_class, numbers.Integral) or per_class < 0:
            raise _invalid("data.labels_per_class", per_class, "must be an integer >= 0 (0: all)")
        for key in ("validation_per_class", "test_per_class"):
            count = config.data.get(key, 0)
            if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 0:
                raise _invalid(f"data.{key}", count, "must be an integer >= 0 (0: none)")
        normalization = config.data.get("normalization", "per_channel")
        if normalization not in NORMALIZATIONS:
            raise _invalid("data.normalization", normalization, f"choose one of {NORMALIZATIONS}")
    if init_scheme(config) not in INIT_SCHEMES:
        raise _invalid("model.init", init_scheme(config), f"choose one of {INIT_SCHEMES}")
    fgsm_space = (config.get("eval") or {}).get("fgsm_space", "normalized")
    if fgsm_space not in FGSM_SPACES:
        raise _invalid("eval.fgsm_space", fgsm_space, f"choose one of {FGSM_SPACES}")
    for key in ("batch_size", "eval_batch_size", "num_epochs", "log_every_steps"):
        _positive_int(config, key)
    if config.loss not in LOSS_NAMES:
        raise _invalid("loss", config.loss, f"choose one of {LOSS_NAMES}")
    alpha = config.mix.alpha
    if not isinstance(alpha, numbers.Real) or not alpha >= 0:
        raise _invalid("mix.alpha", alpha, "must be >= 0 (0 disables mixing)")
    if config.optimizer.learning_rate <= 0:
        raise _invalid("optimizer.learning_rate", config.optimizer.learning_rate, "must be > 0")
    model = build_model(config)
    points = model.num_mix_points
    layers = tuple(config.mix.layers)
    if any(not isinstance(k, numbers.Integral) or not 0 <= k < points for k in layers) \
            or len(set(layers)) != len(layers):
        raise _invalid("mix.layers", layers,
                       f"{config.model.name} has mix points 0..{points - 1} (0 = input); give "
                       "distinct ones, () for ERM, (0,) for Input Mixup")


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError for the first invalid key of `config` or of any of its variants."""
    for name, single in variants(config):
        try:
            _check_single(single)
        except ConfigError as error:
            if not name:
                raise
            raise ConfigError(f"variant {name!r}: {error}") from None
