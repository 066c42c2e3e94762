"""Semi-supervised SVHN with 1,000 labels (paper §5.3): the authors' WRN-28-2 protocol.

    mmix-train --config=configs/ssl_svhn.py:manifold --workdir=runs/ssl_svhn \
        --config.data.manual_dir=ARCHIVES
    mmix-train --config=configs/ssl_svhn.py --workdir=runs/ssl_svhn   # all three methods

Argument: [METHOD][,epochs=N]. As the authors' README command (semi-supervised/ at
8d359f1): 100 labelled images per class and 732 per class for validation from the training set
(svhn_cropped "train"; "extra" unused), every image outside validation (65,937) unlabelled;
100 + 100 images per update, 200 epochs, SGD Nesterov 0.9, lr 0.1 ×0.1 at 100/150/175, weight
decay 5e-4; pixels scaled to [−1, 1] (mean = std = 0.5), crop with 2-pixel padding, no flip;
their WRN-28-2; w_max = 2, ramped over the first 40 % of updates. Paper: 5.70 % test error.
ICT (ICT's README, SVHN): input mixing with α = 0.1 for both terms, consistency weight 100
ramped over the first quarter; ICT reports 3.53 %.
"""

import ml_collections

from mmix_jax import config_lib

EPOCHS = 200
MILESTONES = (100, 150, 175)

METHODS = {
    "supervised": dict(targets="self", supervised_alpha=0.1, supervised_layers=(0, 1, 2),
                       unsupervised_alpha=2.0, unsupervised_layers=(0, 1, 2),
                       unsupervised_weight_max=0.0, rampup_fraction=0.4),
    "manifold": dict(targets="self", supervised_alpha=0.1, supervised_layers=(0, 1, 2),
                     unsupervised_alpha=2.0, unsupervised_layers=(0, 1, 2),
                     unsupervised_weight_max=2.0, rampup_fraction=0.4),
    "ict": dict(targets="mean_teacher", supervised_alpha=0.1, supervised_layers=(0,),
                unsupervised_alpha=0.1, unsupervised_layers=(0,), unsupervised_weight_max=100.0,
                rampup_fraction=0.25, ema_decay=0.999),
}


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    picked, options = config_lib.parse_arg(arg, {"method": METHODS})
    epochs = int(options.get("epochs", EPOCHS))
    config = config_lib.base(num_classes=10, num_epochs=epochs, batch_size=100,
                             log_every_steps=660)
    config.data = ml_collections.ConfigDict(dict(
        name="svhn_cropped", data_dir="", manual_dir="", path="", test_per_class=0,
        validation_per_class=732, labels_per_class=100, image_shape=(32, 32, 3),
        crop_padding=2, flip=False, normalization="half", zca=False))
    config.model = ml_collections.ConfigDict(dict(name="wrn28_2_ssl", dtype="float32",
                                                  init="torch"))
    config.optimizer = config_lib.sgd(config_lib.scaled_milestones(MILESTONES, EPOCHS, epochs))
    config.optimizer.weight_decay = 5e-4
    config.checkpoint.every_epochs = max(1, epochs // 50)
    config.checkpoint.best_metric = "val_accuracy"
    config_lib.add_semi_supervised_methods(config, picked.get("method"), METHODS)
    return config
