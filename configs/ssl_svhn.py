"""Semi-supervised SVHN with 1,000 labels (paper §5.3): the authors' WRN-28-2 protocol.

    mmix-train --config=configs/ssl_svhn.py:manifold --workdir=runs/ssl_svhn \
        --config.data.manual_dir=ARCHIVES
    mmix-train --config=configs/ssl_svhn.py --workdir=runs/ssl_svhn   # all three methods

Argument: [METHOD][,epochs=N]. As the authors' README command (semi-supervised/ at
8d359f1): 100 labelled images per class and 732 per class for validation from svhn_cropped
"train" ("extra" unused), every image outside validation (65,937) unlabelled; 100 + 100 images
per update, 200 epochs, SGD Nesterov 0.9, lr 0.1 ×0.1 at 100/150/175, weight decay 5e-4; pixels
scaled to [−1, 1] (mean = std = 0.5), crop with 2-pixel padding, no flip; their WRN-28-2;
w_max = 2. Paper: 5.70 % test error. ICT (its README's SVHN command): α = 0.1, consistency
weight 100; ICT reports 3.53 %.
"""

import ml_collections

from mmix_jax.harness import config_lib

EPOCHS = 200
MILESTONES = (100, 150, 175)
METHODS = config_lib.semi_supervised_methods(weight_max=2.0, ict_alpha=0.1)


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    return config_lib.semi_supervised_config(
        arg, epochs=EPOCHS, milestones=MILESTONES, methods=METHODS, evaluations=50,
        data=dict(name="svhn_cropped", validation_per_class=732, labels_per_class=100,
                  image_shape=(32, 32, 3), crop_padding=2, flip=False, normalization="half"),
        model=dict(name="wrn28_2_ssl", dropout_rate=0.3))
