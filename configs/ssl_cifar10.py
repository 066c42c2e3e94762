"""Semi-supervised CIFAR-10 with 4,000 labels (paper §5.3): the authors' WRN-28-2 protocol.

    mmix-train --config=configs/ssl_cifar10.py:manifold --workdir=runs/ssl_c10 \
        --config.data.manual_dir=ARCHIVES
    mmix-train --config=configs/ssl_cifar10.py --workdir=runs/ssl_c10   # all three methods

Argument: [METHOD][,epochs=N]. As the authors' README command (semi-supervised/ at
8d359f1): 400 labelled images per class and 500 per class for validation from the training
set, every image outside validation (45,000) unlabelled; 100 + 100 images per update, an epoch
= 450 updates, 1000 epochs, SGD Nesterov 0.9, lr 0.1 ×0.1 at 500/750/875, weight decay 5e-4;
per-channel normalisation then ZCA whitening (data.zca), crop with 2-pixel padding and flip;
their WRN-28-2 (LeakyReLU, dropout 0.3); w_max = 1, ramped over the first 40 % of updates.
Paper: 10.26 % test error (Manifold Mixup). ICT (ICT's README, CIFAR-10): input mixing with
α = 1 for both terms, consistency weight 100 ramped over the first quarter; ICT reports 7.66 %.
"""

import ml_collections

from mmix_jax import config_lib

EPOCHS = 1000
MILESTONES = (500, 750, 875)

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
                             log_every_steps=450)
    config.data = ml_collections.ConfigDict(dict(
        name="cifar10", data_dir="", manual_dir="", path="", test_per_class=0,
        validation_per_class=500, labels_per_class=400, image_shape=(32, 32, 3),
        crop_padding=2, flip=True, normalization="per_channel", zca=True))
    config.model = ml_collections.ConfigDict(dict(name="wrn28_2_ssl", dtype="float32",
                                                  init="torch"))
    config.optimizer = config_lib.sgd(config_lib.scaled_milestones(MILESTONES, EPOCHS, epochs))
    config.optimizer.weight_decay = 5e-4
    config.checkpoint.every_epochs = max(1, epochs // 100)
    config.checkpoint.best_metric = "val_accuracy"
    config_lib.add_semi_supervised_methods(config, picked.get("method"), METHODS)
    return config
