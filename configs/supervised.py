"""The paper's supervised experiments (Verma et al. 2019, Table 1, Sec. 5.1) as the authors ran them.

    mmix-train --config=configs/supervised.py:cifar10,preactresnet18,manifold --workdir=runs/c10
    mmix-train --config=configs/supervised.py:cifar100,wrn28_10 --workdir=runs/c100   # 3 methods
    mmix-train --config=configs/supervised.py:svhn,preactresnet18,input,epochs=30 --workdir=...
    mmix-train --config=configs/supervised.py:cifar10,schedule=legacy1200 --workdir=...

Argument: DATASET[,MODEL][,METHOD][,epochs=N][,schedule=NAME]; no METHOD trains all three as
variants (workdir/erm, workdir/input, workdir/manifold). epochs=N keeps the milestones at the
same fractions of the run. Offline, TFDS data sets read the original archives from
--config.data.manual_dir; --config.data.name=npz --config.data.path=FILE reads your own arrays.
"""

import ml_collections

from mmix_jax.harness import config_lib

# name → (model keys, default schedule). Parameters drawn as PyTorch's defaults, as theirs.
MODELS = {
    "preactresnet18": (dict(name="preactresnet18", width=64), "readme"),
    "preactresnet34": (dict(name="preactresnet34", width=64), "readme"),
    "wrn28_10": (dict(name="wrn28_10", dropout_rate=0.0), "wrn"),  # their WRN (bias, stride)
}

# schedule → (epochs, milestones where the learning rate 0.1 is multiplied by 0.1)
SCHEDULES = {
    "readme": (2000, (500, 1000, 1500)),  # the authors' README commands (PreActResNet)
    "legacy1200": (1200, (400, 800)),     # their older train_classifier_mixup.py
    "wrn": (400, (200, 300)),             # their README, WRN-28-10
}

# method → (α of Beta(α, α), eligible mix points: 0 = input, i = after stage i)
METHODS = {
    "erm": (0.0, ()),
    "input": (1.0, (0,)),
    "manifold": (2.0, (0, 1, 2)),
}


def get_config(arg: str = "cifar10") -> ml_collections.ConfigDict:
    picked, options = config_lib.parse_arg(
        arg, {"dataset": config_lib.IMAGE_DATASETS, "model": MODELS, "method": METHODS},
        ("epochs", "schedule"))
    dataset = picked.get("dataset", "cifar10")
    model, schedule = MODELS[picked.get("model", "preactresnet18")]
    schedule = options.get("schedule", schedule)
    if schedule not in SCHEDULES:
        raise ValueError(f"config argument {arg!r}: schedule={schedule}; choose one of "
                         f"{sorted(SCHEDULES)}.")
    paper_epochs, milestones = SCHEDULES[schedule]
    epochs = int(options.get("epochs", paper_epochs))
    config = config_lib.base(num_classes=config_lib.IMAGE_DATASETS[dataset][1], num_epochs=epochs)
    config.data = config_lib.image_data(dataset)
    config.model = ml_collections.ConfigDict(dict(model, dtype="float32", init="torch"))
    config.eval.update(config_lib.robustness(config_lib.OUT_OF_DISTRIBUTION[dataset]))
    config.optimizer = config_lib.sgd(config_lib.scaled_milestones(milestones, paper_epochs,
                                                                   epochs))
    config_lib.add_methods(config, picked.get("method"), METHODS)
    return config
