"""cifar100: PreActResNet18/34 or WRN-28-10 × ERM / Input Mixup / Manifold Mixup (the paper's setup).

    mmix-train --config=configs/cifar100.py:preactresnet18,manifold --workdir=runs/cifar100_prn18_manifold
    mmix-train --config=configs/cifar100.py:wrn28_10 --workdir=runs/cifar100_wrn   # all three methods
    mmix-train --config=configs/cifar100.py:preactresnet18,manifold,epochs=30 --workdir=...  # short

See mmix_jax/experiments.py for the settings; offline, point --config.data.manual_dir at the
original archives.
"""

import ml_collections

from mmix_jax import experiments


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    return experiments.image_config("cifar100", arg)
