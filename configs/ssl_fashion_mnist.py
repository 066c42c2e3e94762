"""Semi-supervised Fashion-MNIST at CPU scale: 100 labelled images per class, the rest without.

    mmix-train --config=configs/ssl_fashion_mnist.py:manifold --workdir=runs/ssl_fm
    mmix-train --config=configs/ssl_fashion_mnist.py --workdir=runs/ssl_fm   # all three methods
    mmix-train --config=configs/ssl_fashion_mnist.py:ict,epochs=16 --config.seed=1 ...

Argument: [METHOD][,epochs=N] (METHOD: supervised | manifold | ict, see
config_lib.semi_supervised_methods). 500 images per class are held out for validation (the
reported test error is the one of the checkpoint with the best validation accuracy); the
unlabelled pool is every other training image (55,000; an epoch = 550 updates). A WRN-10-1 of
the authors' semi-supervised style with a stride-2 stem (78 k parameters; about an hour per run
on a 2-core CPU at 60 epochs). Otherwise the authors' CIFAR-10 protocol (configs/ssl_cifar10.py).
"""

import ml_collections

from mmix_jax.harness import config_lib

EPOCHS = 60
MILESTONES = (30, 45, 52)  # ×0.1 at 50 / 75 / 87.5 % of the run, as the authors' 500/750/875
METHODS = config_lib.semi_supervised_methods(weight_max=1.0, ict_alpha=1.0)  # CIFAR-10's


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    return config_lib.semi_supervised_config(
        arg, epochs=EPOCHS, milestones=MILESTONES, methods=METHODS,
        data=dict(name="fashion_mnist", validation_per_class=500, labels_per_class=100,
                  image_shape=(28, 28, 1), crop_padding=2, flip=True,
                  normalization="per_channel"),
        model=dict(name="wrn", depth=10, widen_factor=1, style="authors",
                   activation="leaky_relu", dropout_rate=0.3, stem_strides=2))
