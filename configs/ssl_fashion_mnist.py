"""Semi-supervised Fashion-MNIST at CPU scale: 100 labelled images per class, the rest without.

    mmix-train --config=configs/ssl_fashion_mnist.py:manifold --workdir=runs/ssl_fm
    mmix-train --config=configs/ssl_fashion_mnist.py --workdir=runs/ssl_fm   # all three methods
    mmix-train --config=configs/ssl_fashion_mnist.py:ict,epochs=16 --config.seed=1 ...

Argument: [METHOD][,epochs=N]; epochs=N keeps the milestones and the ramp-up at the same
fractions of the run. 500 images per class are held out for validation (the reported test
error is the one of the checkpoint with the best validation accuracy); the unlabelled pool is
every other training image (55,000). A small WRN-10-1 of the authors' semi-supervised style with
a stride-2 stem (78 k parameters; about an hour per run on a 2-core CPU at 60 epochs). The
protocol otherwise follows the authors' CIFAR-10 command (see configs/ssl_cifar10.py).
"""

import ml_collections

from mmix_jax import config_lib

EPOCHS = 60  # an epoch = one pass over the unlabelled pool: 550 updates
MILESTONES = (30, 45, 52)  # ×0.1 at 50 / 75 / 87.5 % of the run, as the authors' 500/750/875

# method → config.semi_supervised. "supervised": the labelled term alone (the baseline);
# "manifold": the paper's (targets from the same network); "ict": mean-teacher targets, input
# mixing, softmax-MSE, with ICT's CIFAR-10 command's α and consistency weight.
METHODS = {
    "supervised": dict(targets="self", supervised_alpha=0.1, supervised_layers=(0, 1, 2),
                       unsupervised_alpha=2.0, unsupervised_layers=(0, 1, 2),
                       unsupervised_weight_max=0.0, rampup_fraction=0.4),
    "manifold": dict(targets="self", supervised_alpha=0.1, supervised_layers=(0, 1, 2),
                     unsupervised_alpha=2.0, unsupervised_layers=(0, 1, 2),
                     unsupervised_weight_max=1.0, rampup_fraction=0.4),
    "ict": dict(targets="mean_teacher", supervised_alpha=1.0, supervised_layers=(0,),
                unsupervised_alpha=1.0, unsupervised_layers=(0,), unsupervised_weight_max=100.0,
                rampup_fraction=0.25, ema_decay=0.999),
}


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    picked, options = config_lib.parse_arg(arg, {"method": METHODS})
    epochs = int(options.get("epochs", EPOCHS))
    config = config_lib.base(num_classes=10, num_epochs=epochs, batch_size=100,
                             log_every_steps=550)
    config.data = ml_collections.ConfigDict(dict(
        name="fashion_mnist", data_dir="", manual_dir="", path="", test_per_class=0,
        validation_per_class=500, labels_per_class=100, image_shape=(28, 28, 1),
        crop_padding=2, flip=True, normalization="per_channel", zca=False))
    config.model = ml_collections.ConfigDict(dict(
        name="wrn", depth=10, widen_factor=1, style="authors", activation="leaky_relu",
        dropout_rate=0.3, stem_strides=2, dtype="float32", init="torch"))
    config.optimizer = config_lib.sgd(config_lib.scaled_milestones(MILESTONES, EPOCHS, epochs))
    config.optimizer.weight_decay = 5e-4
    config.checkpoint.every_epochs = max(1, epochs // 20)
    config.checkpoint.best_metric = "val_accuracy"
    config_lib.add_semi_supervised_methods(config, picked.get("method"), METHODS)
    return config
