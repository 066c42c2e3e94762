"""ImageNet (ILSVRC-2012) with a PreActResNet-50: ERM, Input Mixup and Manifold Mixup on a pod.

    # every host, at once (docs/scaling.md); the archives in MANUAL, TFDS files in DATA_DIR
    mmix-train --distributed --config=configs/imagenet.py:manifold \
        --config.data.manual_dir=MANUAL --config.data.data_dir=DATA_DIR --workdir=gs://b/in1k

Argument: [METHOD][,epochs=N] (no METHOD: all three as variants). The training split is
streamed (grain threads, each process reading only its share of every batch) from TFDS's
ArrayRecord files; decoding and the Inception-style random-resized crop + flip run on the host,
evaluation takes the centre 224 × 224 of the image resized to 256.

The numbers and their source, the mixup ImageNet recipe (Zhang et al. 2018, Sec. 3.1, which
follows Goyal et al. 2017): 90 epochs, learning rate 0.1 per 256 images scaled linearly (0.4 for
the global batch of 1024), ×0.1 at epochs 30, 60 and 80, 5 warm-up epochs, SGD momentum 0.9
(not Nesterov), weight decay 1e-4, softmax cross-entropy, α = 0.2 (their best for ResNet-50 at
90 epochs; 200 epochs: milestones 60/120/180, use `epochs=200`, which scales them). The
Manifold Mixup paper has no full-ImageNet experiment: α = 0.2 and mix points {0, 1, 2} (input
and after the first two stages) carry its CIFAR choice of points over. bfloat16 compute with
float32 parameters; BatchNorm statistics per device (global batch 1024 / devices each).
There is no validation split: the schedule is fixed in advance, nothing is chosen, and the
ImageNet validation set is the reported test set.
"""

import ml_collections

from mmix_jax.harness import config_lib

EPOCHS = 90
MILESTONES = (30, 60, 80)
GLOBAL_BATCH = 1024
LEARNING_RATE = 0.1 * GLOBAL_BATCH / 256
METHODS = {
    "erm": (0.0, ()),
    "input": (0.2, (0,)),
    "manifold": (0.2, (0, 1, 2)),
}


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    picked, options = config_lib.parse_arg(arg, {"method": METHODS})
    epochs = int(options.get("epochs", EPOCHS))
    config = config_lib.base(num_classes=1000, num_epochs=epochs, batch_size=GLOBAL_BATCH)
    config.loss = "soft_ce"
    config.eval_batch_size = 1000
    config.log_every_steps = 100
    config.checkpoint.every_epochs = 5
    config.data = ml_collections.ConfigDict(dict(
        name="imagenet2012", tfds_name="", data_dir="", manual_dir="", path="",
        test_per_class=0, validation_per_class=0, labels_per_class=0,
        image_shape=(224, 224, 3), crop_padding=0, flip=False,  # both in the host crop
        normalization="imagenet", host_transform="inception_crop", streaming=True,
        loader_threads=16, prefetch_batches=4, prepare_timeout_s=4 * 3600.0))
    config.model = ml_collections.ConfigDict(dict(
        name="preactresnet50", width=64, stem_type="imagenet", dtype="bfloat16", init="torch"))
    config.optimizer = config_lib.sgd(config_lib.scaled_milestones(MILESTONES, EPOCHS, epochs))
    config.optimizer.update(dict(learning_rate=LEARNING_RATE, nesterov=False,
                                 weight_decay=1e-4, warmup_epochs=5.0))
    config_lib.add_methods(config, picked.get("method"), METHODS)
    return config
