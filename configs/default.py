"""The embedded default job: the paper's Figure 1 idea on generated 2-D spirals.

The same MLP is trained with ERM, Input Mixup and Manifold Mixup (mixing at the input or a
hidden layer); the workdir gets decision_boundaries.png (the three side by side) and
summary.json (train/test accuracy, test NLL and mean confidence off the data, per method).

    mmix-train --config=configs/default.py --workdir=runs/spirals
    mmix-train --config=configs/default.py:manifold --workdir=runs/spirals_manifold   # one method
"""

import ml_collections

# Mixing per method: (alpha, eligible mix points). MLP mix points: 0 = input, i = after layer i.
METHODS = {
    "erm": (0.0, ()),
    "input": (1.0, (0,)),
    "manifold": (2.0, (0, 1, 2)),
}


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.data = ml_collections.ConfigDict(
        dict(name="spirals", num_train=2000, num_test=2000, noise=0.04, turns=1.5))
    config.num_classes = 2
    config.model = ml_collections.ConfigDict(
        dict(name="mlp", widths=(256, 256, 256), activation="relu", dtype="float32"))
    config.loss = "bce"
    config.mix = ml_collections.ConfigDict(dict(alpha=2.0, layers=(0, 1, 2)))
    config.batch_size = 100
    config.eval_batch_size = 1000
    config.num_epochs = 200
    config.log_every_steps = 1000
    config.cross_device_batch_norm = False  # BatchNorm models: statistics over all devices
    config.compilation_cache_dir = ""  # e.g. ~/.cache/mmix_jax: compiled steps reused across runs
    config.tensorboard = True  # False: log only (machines without TensorFlow)
    config.profile_dir = ""  # a folder: jax.profiler traces of a few steps (clu Profile)
    config.checkpoint = ml_collections.ConfigDict(dict(
        every_epochs=50, every_steps=0, keep=2, best_metric="test_accuracy", best_mode="max",
        async_save=True))
    config.optimizer = ml_collections.ConfigDict(dict(
        learning_rate=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4,
        milestones=(100, 150), decay_factor=0.1))

    methods = [arg] if arg else list(METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"configs/default.py:{arg}: unknown method; choose one of {list(METHODS)}.")
    config.variants = ml_collections.ConfigDict()
    for method in methods:
        alpha, layers = METHODS[method]
        config.variants[method] = ml_collections.ConfigDict(
            dict(mix=dict(alpha=alpha, layers=layers)))
    return config
