"""fashion_mnist: PreActResNet18/34 or WRN-28-10 × ERM / Input Mixup / Manifold Mixup (the paper's setup).

    mmix-train --config=configs/fashion_mnist.py:preactresnet18,manifold --workdir=runs/fashion_mnist_prn18_manifold
    mmix-train --config=configs/fashion_mnist.py:wrn28_10 --workdir=runs/fashion_mnist_wrn   # all three methods
    mmix-train --config=configs/fashion_mnist.py:preactresnet18,manifold,epochs=30 --workdir=...  # short

See mmix_jax/experiments.py for the settings; offline, point --config.data.manual_dir at the
original archives.
"""

import ml_collections

from mmix_jax import experiments


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    return experiments.image_config("fashion_mnist", arg)
