"""The paper's experiments as ml_collections configs, shared by the files in `configs/`.

A config file calls `image_config(dataset, arg)` or `flattening_config(arg)`; `arg` is the part
of `--config=configs/cifar10.py:ARG` after the colon, comma-separated:

    preactresnet18,manifold      a model and a method
    wrn28_10                     a model, all three methods (variants erm/input/manifold)
    preactresnet18,manifold,epochs=30   a short run: milestones scaled by 30/2000
    preactresnet18,schedule=legacy1200  the older script's 1200 epochs, ×0.1 at 400 and 800

Methods (Verma et al. 2019): ERM; Input Mixup α = 1 at the input; Manifold Mixup α = 2 at
{0, 1, 2} (input, after stage 1, after stage 2). Optimiser and schedule as the commands of the
authors' README: SGD, Nesterov 0.9, lr 0.1, L2 weight decay 1e-4, batch 100; PreActResNet
2000 epochs with ×0.1 at 500, 1000 and 1500; WRN-28-10 400 epochs with ×0.1 at 200 and 300.
Parameters are drawn as PyTorch's defaults (model.init = "torch"), as in the authors' code.
"""

from __future__ import annotations

from typing import Any

import ml_collections

METHODS: dict[str, tuple[float, tuple[int, ...]]] = {
    "erm": (0.0, ()),
    "input": (1.0, (0,)),
    "manifold": (2.0, (0, 1, 2)),
}

# Named schedules: (epochs, milestones at which the learning rate is multiplied by 0.1).
SCHEDULES: dict[str, tuple[int, tuple[int, ...]]] = {
    "readme": (2000, (500, 1000, 1500)),   # the authors' README commands (PreActResNet)
    "legacy1200": (1200, (400, 800)),      # their older train_classifier_mixup.py
    "wrn": (400, (200, 300)),              # their README, WRN-28-10
}

# model name → (model config, default schedule)
IMAGE_MODELS: dict[str, tuple[dict[str, Any], str]] = {
    "preactresnet18": (dict(name="preactresnet18", width=64), "readme"),
    "preactresnet34": (dict(name="preactresnet34", width=64), "readme"),
    "wrn28_10": (dict(name="wrn28_10", dropout_rate=0.0), "wrn"),
}

# dataset → (num_classes, image_shape, crop_padding, flip, normalization). The paper's code:
# CIFAR crop with 2-pixel zero padding + flip, per-channel statistics; SVHN crop only, mean =
# std = 0.5. Fashion-MNIST is treated like CIFAR, MNIST gets no augmentation.
IMAGE_DATASETS: dict[str, tuple[int, tuple[int, int, int], int, bool, str]] = {
    "cifar10": (10, (32, 32, 3), 2, True, "per_channel"),
    "cifar100": (100, (32, 32, 3), 2, True, "per_channel"),
    "svhn_cropped": (10, (32, 32, 3), 2, False, "half"),
    "fashion_mnist": (10, (28, 28, 1), 2, True, "per_channel"),
    "mnist": (10, (28, 28, 1), 0, False, "per_channel"),
}


def parse_arg(arg: str, choices: dict[str, set[str]]) -> tuple[dict[str, str], dict[str, str]]:
    """Splits 'a,b,key=value' into ({kind: token}, {key: value}) with tokens from `choices`."""
    picked: dict[str, str] = {}
    options: dict[str, str] = {}
    for token in filter(None, (t.strip() for t in arg.split(","))):
        if "=" in token:
            key, value = token.split("=", 1)
            options[key] = value
            continue
        kind = next((k for k, names in choices.items() if token in names), None)
        if kind is None or kind in picked:
            allowed = "; ".join(f"{k}: {sorted(v)}" for k, v in choices.items())
            raise ValueError(f"config argument {arg!r}: unexpected {token!r}. Give at most one "
                             f"of each ({allowed}) and optionally epochs=N.")
        picked[kind] = token
    unknown = set(options) - {"epochs", "schedule"}
    if unknown:
        raise ValueError(f"config argument {arg!r}: unknown option(s) {sorted(unknown)}; the "
                         "options are epochs=N and schedule=NAME (other keys: "
                         "--config.KEY=VALUE).")
    if options.get("schedule", "readme") not in SCHEDULES:
        raise ValueError(f"config argument {arg!r}: schedule={options['schedule']}; choose one "
                         f"of {sorted(SCHEDULES)}.")
    return picked, options


def scaled_milestones(milestones: tuple[int, ...], paper_epochs: int, epochs: int) -> tuple[int, ...]:
    """The paper's milestones at the same fractions of a run of `epochs` epochs."""
    return tuple(max(1, round(m * epochs / paper_epochs)) for m in milestones)


def _base(seed: int = 0) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = seed
    config.loss = "bce"
    config.batch_size = 100
    config.eval_batch_size = 1000
    config.log_every_steps = 500
    config.cross_device_batch_norm = False
    config.compilation_cache_dir = ""
    config.tensorboard = True  # False: log only (machines without TensorFlow)
    config.checkpoint = ml_collections.ConfigDict(dict(
        every_epochs=10, every_steps=0, keep=2, best_metric="auto", best_mode="max",
        async_save=True))
    config.eval = ml_collections.ConfigDict(dict(ece_bins=15, fgsm_epsilon=0.03,
                                                 fgsm_space="normalized", spectrum_point=-1))
    return config


def _optimizer(milestones: tuple[int, ...]) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        learning_rate=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4,
        milestones=milestones, decay_factor=0.1))


def _add_methods(config: ml_collections.ConfigDict, method: str | None,
                 methods: dict[str, tuple[float, tuple[int, ...]]]) -> None:
    names = [method] if method else list(methods)
    alpha, layers = methods[names[0]]
    config.mix = ml_collections.ConfigDict(dict(alpha=alpha, layers=layers))
    config.variants = ml_collections.ConfigDict()
    if method is None:  # all methods, one after another into workdir/<method>
        for name in names:
            alpha, layers = methods[name]
            config.variants[name] = ml_collections.ConfigDict(dict(mix=dict(alpha=alpha,
                                                                            layers=layers)))


def _data(dataset: str) -> ml_collections.ConfigDict:
    _, shape, padding, flip, normalization = IMAGE_DATASETS[dataset]
    return ml_collections.ConfigDict(dict(
        name=dataset, data_dir="", manual_dir="", path="", test_per_class=0,
        validation_per_class=0, labels_per_class=0, image_shape=shape, crop_padding=padding,
        flip=flip, normalization=normalization))


def image_config(dataset: str, arg: str = "") -> ml_collections.ConfigDict:
    """A PreActResNet/WRN experiment on `dataset`; `arg` picks model, method, epochs."""
    picked, options = parse_arg(arg, {"model": set(IMAGE_MODELS), "method": set(METHODS)})
    model_name = picked.get("model", "preactresnet18")
    model, schedule = IMAGE_MODELS[model_name]
    paper_epochs, milestones = SCHEDULES[options.get("schedule", schedule)]
    epochs = int(options.get("epochs", paper_epochs))
    config = _base()
    config.data = _data(dataset)
    config.num_classes = IMAGE_DATASETS[dataset][0]
    config.model = ml_collections.ConfigDict(dict(model, dtype="float32", init="torch"))
    config.num_epochs = epochs
    config.optimizer = _optimizer(scaled_milestones(milestones, paper_epochs, epochs))
    _add_methods(config, picked.get("method"), METHODS)
    return config


# The flattening study (Sec. 3.2, App. G): an MLP on flattened 28×28 digits, 3×1024 LeakyReLU,
# a 12-unit bottleneck, 4×1024; mixing only at the bottleneck (mix point 4), α = 2.
FLATTENING_BOTTLENECK_POINT = 4
FLATTENING_METHODS: dict[str, tuple[float, tuple[int, ...]]] = {
    "erm": (0.0, ()),
    "input": (2.0, (0,)),
    "manifold": (2.0, (FLATTENING_BOTTLENECK_POINT,)),
}


def flattening_config(arg: str = "") -> ml_collections.ConfigDict:
    """The bottleneck MLP on MNIST or Fashion-MNIST; the spectrum at the bottleneck."""
    picked, options = parse_arg(arg, {"dataset": {"mnist", "fashion_mnist", "npz"},
                                      "method": set(FLATTENING_METHODS)})
    dataset = picked.get("dataset", "fashion_mnist")
    paper_epochs, milestones = 60, (20, 40)
    epochs = int(options.get("epochs", paper_epochs))
    config = _base()
    config.data = _data("mnist" if dataset == "npz" else dataset)
    config.data.crop_padding, config.data.flip = 0, False
    if dataset == "npz":  # e.g. --config.data.path=mnist_10k.npz: digits without a test split
        config.data.name, config.data.test_per_class = "npz", 200
    config.num_classes = 10
    config.model = ml_collections.ConfigDict(dict(
        name="mlp", widths=(1024,) * 7, bottleneck=12, bottleneck_position=3,
        activation="leaky_relu", dtype="float32", init="torch"))
    config.num_epochs = epochs
    config.optimizer = _optimizer(scaled_milestones(milestones, paper_epochs, epochs))
    config.eval.spectrum_point = FLATTENING_BOTTLENECK_POINT
    _add_methods(config, picked.get("method"), FLATTENING_METHODS)
    return config


__all__ = ["FLATTENING_METHODS", "IMAGE_DATASETS", "IMAGE_MODELS", "METHODS", "SCHEDULES",
           "flattening_config", "image_config", "parse_arg", "scaled_milestones"]
