"""Plumbing shared by the files in configs/: argument parsing and the settings every run has.

The numbers of an experiment (data, model, schedule, α, mix points) are stated in its config
file; this module only turns them into an ml_collections ConfigDict.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import ml_collections

from mmix_jax.harness.methods import ICT_RUN


def parse_arg(arg: str, choices: Mapping[str, Sequence[str]],
              options: Sequence[str] = ("epochs",)) -> tuple[dict[str, str], dict[str, str]]:
    """Splits 'a,b,key=value' into ({kind: token}, {key: value}) with tokens from `choices`."""
    picked: dict[str, str] = {}
    given: dict[str, str] = {}
    for token in filter(None, (t.strip() for t in arg.split(","))):
        if "=" in token:
            key, value = token.split("=", 1)
            given[key] = value
            continue
        kind = next((k for k, names in choices.items() if token in names), None)
        if kind is None or kind in picked:
            allowed = "; ".join(f"{k}: {sorted(v)}" for k, v in choices.items())
            raise ValueError(f"config argument {arg!r}: unexpected {token!r}. Give at most one "
                             f"of each ({allowed}) and optionally {', '.join(options)}.")
        picked[kind] = token
    unknown = set(given) - set(options)
    if unknown:
        raise ValueError(f"config argument {arg!r}: unknown option(s) {sorted(unknown)}; the "
                         f"options are {', '.join(f'{o}=...' for o in options)} (other keys: "
                         "--config.KEY=VALUE).")
    return picked, given


# name → (TFDS name, classes, image shape, crop padding, flip, normalisation). The authors'
# code: CIFAR random crop with 2-pixel zero padding + horizontal flip, per-channel statistics;
# SVHN the crop only, pixels normalised with mean = std = 0.5. Fashion-MNIST as CIFAR.
IMAGE_DATASETS = {
    "cifar10": ("cifar10", 10, (32, 32, 3), 2, True, "per_channel"),
    "cifar100": ("cifar100", 100, (32, 32, 3), 2, True, "per_channel"),
    "svhn": ("svhn_cropped", 10, (32, 32, 3), 2, False, "half"),
    "fashion_mnist": ("fashion_mnist", 10, (28, 28, 1), 2, True, "per_channel"),
}
# The real data set each is usually paired with for outlier detection (offline:
# --config.eval.ood_sets="('npz:PATH', 'uniform', 'gaussian')").
OUT_OF_DISTRIBUTION = {"cifar10": "tfds:svhn_cropped", "cifar100": "tfds:svhn_cropped",
                       "svhn": "tfds:cifar10", "fashion_mnist": "tfds:mnist"}


def image_data(dataset: str) -> ml_collections.ConfigDict:
    """config.data for one of IMAGE_DATASETS: the whole training set, the authors' augmentation."""
    tfds_name, _, shape, padding, flip, normalization = IMAGE_DATASETS[dataset]
    return ml_collections.ConfigDict(dict(
        name=tfds_name, data_dir="", manual_dir="", path="", test_per_class=0,
        validation_per_class=0, labels_per_class=0, image_shape=shape, crop_padding=padding,
        flip=flip, normalization=normalization))


def scaled_milestones(milestones: Sequence[int], paper_epochs: int, epochs: int) -> tuple[int, ...]:
    """The milestones at the same fractions of a run of `epochs` epochs."""
    return tuple(max(1, round(m * epochs / paper_epochs)) for m in milestones)


def base(**settings: Any) -> ml_collections.ConfigDict:
    """The keys every run has, with the paper's batch size, loss and evaluation defaults."""
    config = ml_collections.ConfigDict(dict(
        seed=0, loss="bce", batch_size=100, eval_batch_size=1000, log_every_steps=500,
        cross_device_batch_norm=False, compilation_cache_dir="", tensorboard=True,
        profile_dir="", stop_after_nonfinite_steps=5))
    config.checkpoint = ml_collections.ConfigDict(dict(
        every_epochs=10, every_steps=0, keep=2, best_metric="auto", best_mode="max",
        async_save=True))
    config.eval = ml_collections.ConfigDict(dict(
        ece_bins=15, fgsm_epsilon=0.03, fgsm_space="normalized", spectrum_point=-1,
        deformations=(), rotation_angles=(), ood_sets=(), ood_examples=10_000, pgd_steps=(),
        pgd_step_factor=2.5, pgd_random_start=True, pgd_examples=1000, seed=0))
    config.update(settings)
    return config


def robustness(ood_pair: str = "") -> dict[str, Any]:
    """config.eval entries that measure robustness beyond FGSM (mmix_jax.evaluation.robustness): the five
    deformations, accuracy at rotations 0°–90°, out-of-distribution detection against
    `ood_pair` (the real data set users pair with this one) and two noises, and PGD with 1, 10
    and 20 steps (α = 2.5·ε/steps, random start) on the first 1,000 test images."""
    return dict(deformations=("rotate20", "rotate40", "shear", "zoom_in", "zoom_out"),
                rotation_angles=(0.0, 15.0, 30.0, 45.0, 60.0, 75.0, 90.0),
                ood_sets=((ood_pair,) if ood_pair else ()) + ("uniform", "gaussian"),
                pgd_steps=(1, 10, 20))


def sgd(milestones: Sequence[int]) -> ml_collections.ConfigDict:
    """The paper's optimiser: SGD, Nesterov 0.9, lr 0.1, L2 1e-4, ×0.1 at each milestone."""
    return ml_collections.ConfigDict(dict(learning_rate=0.1, momentum=0.9, nesterov=True,
                                          weight_decay=1e-4, milestones=tuple(milestones),
                                          decay_factor=0.1))


def add_methods(config: ml_collections.ConfigDict, method: str | None,
                methods: Mapping[str, tuple[float, tuple[int, ...]]]) -> None:
    """config.mix for one method, or (method None) every method as variants."""
    names = [method] if method else list(methods)
    alpha, layers = methods[names[0]]
    config.mix = ml_collections.ConfigDict(dict(alpha=alpha, layers=layers))
    config.variants = ml_collections.ConfigDict()
    if method is None:  # all methods, one after another into workdir/<method>
        for name in names:
            alpha, layers = methods[name]
            config.variants[name] = ml_collections.ConfigDict(dict(mix=dict(alpha=alpha,
                                                                            layers=layers)))


# ICT_RUN (methods.py) is ICT's README commands (vikasverma1077/ICT): --dropout 0.0, SGD
# momentum 0.9 without Nesterov (its default), weight decay 1e-4 (its default), a cosine
# ramp-down of the learning rate that reaches 0 at --lr_rampdown_epochs 450 for --epochs 400.


def semi_supervised_methods(*, weight_max: float, ict_alpha: float,
                            ict_weight_max: float = 100.0) -> dict[str, dict[str, Any]]:
    """The three semi-supervised methods with the authors' fixed settings; the numbers that
    differ between data sets are the arguments.

    - "supervised": the labelled term alone (w_max = 0): Manifold Mixup α = 0.1 at {0, 1, 2}
      with cross-entropy, the baseline.
    - "manifold" (the paper's semi-supervised code): the same labelled term; unlabelled targets
      from the same network, α = 2 at {0, 1, 2}, w_max = `weight_max`, ramped up over the first
      40 % of the updates.
    - "ict" (ICT's README): input mixing with α = `ict_alpha` in both terms, mean-teacher
      targets (EMA 0.999), softmax-MSE weighted up to `ict_weight_max` over the first 25 %;
      and ICT's own run settings (`ICT_RUN`: no dropout, no Nesterov, weight decay 1e-4, the
      cosine ramp-down), applied by `semi_supervised_config`.
    """
    manifold = dict(targets="self", supervised_alpha=0.1, supervised_layers=(0, 1, 2),
                    unsupervised_alpha=2.0, unsupervised_layers=(0, 1, 2),
                    unsupervised_weight_max=weight_max, rampup_fraction=0.4)
    return {
        "supervised": dict(manifold, unsupervised_weight_max=0.0),
        "manifold": manifold,
        "ict": dict(targets="mean_teacher", supervised_alpha=ict_alpha, supervised_layers=(0,),
                    unsupervised_alpha=ict_alpha, unsupervised_layers=(0,),
                    unsupervised_weight_max=ict_weight_max, rampup_fraction=0.25,
                    ema_decay=0.999, run=ICT_RUN),
    }


def semi_supervised_config(arg: str, *, data: Mapping[str, Any], model: Mapping[str, Any],
                           epochs: int, milestones: Sequence[int],
                           methods: Mapping[str, Mapping[str, Any]], num_classes: int = 10,
                           evaluations: int = 20, weight_decay: float = 5e-4
                           ) -> ml_collections.ConfigDict:
    """A semi-supervised config from its numbers: `arg` = [METHOD][,epochs=N] (no METHOD: all
    as variants; epochs=N keeps milestones and ramp-up at the same fractions); the authors'
    SGD with `weight_decay`, 100 labelled + 100 unlabelled images per update, about
    `evaluations` checkpoints per run and the test error of the best validation accuracy."""
    picked, options = parse_arg(arg, {"method": methods})
    run_epochs = int(options.get("epochs", epochs))
    config = base(num_classes=num_classes, num_epochs=run_epochs, batch_size=100)
    config.data = ml_collections.ConfigDict(dict(
        dict(data_dir="", manual_dir="", path="", test_per_class=0, zca=False), **data))
    config.model = ml_collections.ConfigDict(dict(dict(dtype="float32", init="torch"), **model))
    config.optimizer = sgd(scaled_milestones(milestones, epochs, run_epochs))
    config.optimizer.update(dict(weight_decay=weight_decay, schedule="step", rampdown_epochs=0.0))
    config.checkpoint.every_epochs = max(1, run_epochs // evaluations)
    config.checkpoint.best_metric = "val_accuracy"
    add_semi_supervised_methods(config, picked.get("method"), methods)
    return config


def run_overrides(method: Mapping[str, Any], epochs: int) -> dict[str, Any]:
    """The model and optimizer keys a method sets beyond config.semi_supervised (its "run"
    entry, e.g. ICT_RUN), as config overrides; empty for methods without one."""
    run = method.get("run")
    if not run:
        return {}
    return {"model": {"dropout_rate": run["dropout_rate"]},
            "optimizer": {"nesterov": run["nesterov"], "weight_decay": run["weight_decay"],
                          "schedule": "cosine",
                          "rampdown_epochs": round(run["rampdown_ratio"] * epochs, 3)}}


def semi_supervised_section(method: Mapping[str, Any], epochs: int) -> ml_collections.ConfigDict:
    """config.semi_supervised for one method of a semi-supervised table: its entries, with the
    ramp-up given as a fraction of the run ("rampup_fraction") turned into epochs."""
    entries = dict(method)
    entries.pop("run", None)
    fraction = entries.pop("rampup_fraction")
    entries.setdefault("ema_decay", 0.999)
    entries.setdefault("unlabeled_batch_size", 100)
    entries.setdefault("batch_norm_passes", "step")  # "authors": their five passes
    entries.setdefault("target_gradient", "stop")  # "through": differentiate "self" targets
    return ml_collections.ConfigDict(dict(entries, rampup_epochs=fraction * epochs))


def add_semi_supervised_methods(config: ml_collections.ConfigDict, method: str | None,
                                methods: Mapping[str, Mapping[str, Any]]) -> None:
    """config.semi_supervised for one method, or (method None) every method as variants."""
    names = [method] if method else list(methods)
    sections = {name: semi_supervised_section(methods[name], config.num_epochs)
                for name in names}
    config.semi_supervised = sections[names[0]]
    config.variants = ml_collections.ConfigDict()
    if method is not None:
        for key, values in run_overrides(methods[method], config.num_epochs).items():
            config[key].update(values)
        return
    for name in names:
        config.variants[name] = ml_collections.ConfigDict(dict(
            semi_supervised=sections[name].to_dict(),
            **run_overrides(methods[name], config.num_epochs)))


__all__ = ["add_methods", "add_semi_supervised_methods", "base", "parse_arg", "robustness",
           "run_overrides", "scaled_milestones", "semi_supervised_config", "semi_supervised_methods",
           "semi_supervised_section", "sgd"]
