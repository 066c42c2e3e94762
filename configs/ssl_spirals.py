"""Semi-supervised learning in a minute: two spirals (one turn), 4 labelled points per class,
the other training points (50 held out for validation) without labels.

    mmix-train --config=configs/ssl_spirals.py --workdir=runs/ssl_spirals   # three methods
    mmix-train --config=configs/ssl_spirals.py:ict --workdir=runs/ssl_spirals_ict

The same MLP (3 × 256, ReLU) is trained three ways on the same labels: labelled only
(Manifold Mixup α = 0.1 on the 8 labelled points, w_max = 0), SSL Manifold Mixup (the network's
own predictions on unlabelled points as targets of the mixing-consistency loss, α = 2 at the
input and the first two hidden layers, w_max = WEIGHT_MAX) and ICT (mean-teacher targets,
input mixing α = 1, weight ICT_WEIGHT_MAX); SGD lr 0.03 for all three. Each reports the
checkpoint with the best validation accuracy (25 labelled points per class held out: more
labels than the training set has, as in the papers' protocols). The workdir gets decision_boundaries.png (labelled points large,
unlabelled small) and summary.json (test accuracy, NLL and off-data confidence per method).
Argument: [METHOD][,epochs=N].
"""

import ml_collections

from mmix_jax import config_lib

EPOCHS = 100            # 19 updates per epoch (1,950 unlabelled points, 100 per update)
MILESTONES = (50, 75)   # lr ×0.1 at each
LEARNING_RATE = 0.03    # at 0.1 SSL Manifold Mixup diverged sooner (no BatchNorm in the MLP)
LABELS_PER_CLASS = 4
VALIDATION_PER_CLASS = 25  # labelled points held out to choose the weights and checkpoints
WEIGHT_MAX = 0.3        # of {0.3, 1, 3}, on validation accuracy (docs/reproduction.md §4)
ICT_WEIGHT_MAX = 10.0   # of {10, 100}, on validation accuracy (a tie; the smaller kept)


def methods() -> dict:
    table = config_lib.semi_supervised_methods(weight_max=WEIGHT_MAX, ict_alpha=1.0,
                                               ict_weight_max=ICT_WEIGHT_MAX)
    table["ict"].pop("run")  # no dropout to switch off; the spirals' own SGD for all three
    return table


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    config = config_lib.semi_supervised_config(
        arg, epochs=EPOCHS, milestones=MILESTONES, methods=methods(), num_classes=2,
        evaluations=10, weight_decay=1e-4,
        data=dict(name="spirals", num_train=2000, num_test=2000, noise=0.04, turns=1.0,
                  labels_per_class=LABELS_PER_CLASS, validation_per_class=VALIDATION_PER_CLASS),
        model=dict(name="mlp", widths=(256, 256, 256), activation="relu"))
    config.optimizer.learning_rate = LEARNING_RATE
    config.batch_size = 2 * LABELS_PER_CLASS  # every labelled point in every update
    config.eval_batch_size = 1000
    config.log_every_steps = 500
    return config
