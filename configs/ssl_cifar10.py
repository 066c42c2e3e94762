"""Semi-supervised CIFAR-10 with 4,000 labels (paper §5.3): the authors' WRN-28-2 protocol.

    mmix-train --config=configs/ssl_cifar10.py:manifold --workdir=runs/ssl_c10 \
        --config.data.manual_dir=ARCHIVES
    mmix-train --config=configs/ssl_cifar10.py --workdir=runs/ssl_c10   # all three methods

Argument: [METHOD][,epochs=N]. As the authors' README command (semi-supervised/ at
8d359f1): 400 labelled images per class and 500 per class for validation from the training
set, every image outside validation (45,000) unlabelled; 100 + 100 images per update (an epoch
= 450 updates), 1000 epochs, SGD Nesterov 0.9, lr 0.1 ×0.1 at 500/750/875, weight decay 5e-4;
per-channel normalisation then ZCA whitening (data.zca), crop with 2-pixel padding and flip;
their WRN-28-2 (LeakyReLU, dropout 0.3); w_max = 1. Paper: 10.26 % test error. ICT (its
README's CIFAR-10 command): α = 1, consistency weight 100; ICT reports 7.66 %.
"""

import ml_collections

from mmix_jax.harness import config_lib

EPOCHS = 1000
MILESTONES = (500, 750, 875)
METHODS = config_lib.semi_supervised_methods(weight_max=1.0, ict_alpha=1.0)


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    return config_lib.semi_supervised_config(
        arg, epochs=EPOCHS, milestones=MILESTONES, methods=METHODS, evaluations=100,
        data=dict(name="cifar10", validation_per_class=500, labels_per_class=400,
                  image_shape=(32, 32, 3), crop_padding=2, flip=True,
                  normalization="per_channel", zca=True),
        model=dict(name="wrn28_2_ssl", dropout_rate=0.3))
