"""The flattening study (paper Sec. 3.2, App. G): a bottleneck MLP on flattened digits.

3×1024 LeakyReLU, a 12-unit bottleneck, 4×1024; Manifold Mixup only at the bottleneck,
α = 2; the evaluation reports the singular values of each class's bottleneck representations.

    mmix-train --config=configs/flattening.py:fashion_mnist --workdir=runs/flat   # all methods
    mmix-train --config=configs/flattening.py:mnist,manifold,epochs=10 --workdir=...
"""

import ml_collections

from mmix_jax import experiments


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    return experiments.flattening_config(arg)
