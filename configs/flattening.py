"""The flattening study (paper Sec. 3.2, App. G): a bottleneck MLP on flattened digits.

    mmix-train --config=configs/flattening.py:fashion_mnist --workdir=runs/flat   # all methods
    mmix-train --config=configs/flattening.py:mnist,manifold,epochs=10 --workdir=...
    mmix-train --config=configs/flattening.py:npz,manifold --config.data.path=mnist_10k.npz ...

3×1024 LeakyReLU, a 12-unit bottleneck, 4×1024; Manifold Mixup only at the bottleneck (mix
point 4), α = 2; 60 epochs, ×0.1 at 20 and 40. The evaluation reports the singular values of
each class's bottleneck representations. `npz`: digits in a local file without a test split,
200 per class of them held out for test.
"""

import ml_collections

from mmix_jax.harness import config_lib

BOTTLENECK_POINT = 4  # mix point i is the output of hidden layer i; layer 4 is the bottleneck
EPOCHS, MILESTONES = 60, (20, 40)

# method → (α, mix points)
METHODS = {
    "erm": (0.0, ()),
    "input": (2.0, (0,)),
    "manifold": (2.0, (BOTTLENECK_POINT,)),
}


def get_config(arg: str = "fashion_mnist") -> ml_collections.ConfigDict:
    picked, options = config_lib.parse_arg(
        arg, {"dataset": ("mnist", "fashion_mnist", "npz"), "method": METHODS})
    dataset = picked.get("dataset", "fashion_mnist")
    epochs = int(options.get("epochs", EPOCHS))
    config = config_lib.base(num_classes=10, num_epochs=epochs)
    config.data = ml_collections.ConfigDict(dict(
        name=dataset, data_dir="", manual_dir="", path="",
        test_per_class=200 if dataset == "npz" else 0, validation_per_class=0,
        labels_per_class=0, image_shape=(28, 28, 1), crop_padding=0, flip=False,
        normalization="per_channel"))
    config.model = ml_collections.ConfigDict(dict(
        name="mlp", widths=(1024,) * 7, bottleneck=12, bottleneck_position=3,
        activation="leaky_relu", dtype="float32", init="torch"))
    config.optimizer = config_lib.sgd(config_lib.scaled_milestones(MILESTONES, EPOCHS, epochs))
    config.eval.spectrum_point = BOTTLENECK_POINT
    config_lib.add_methods(config, picked.get("method"), METHODS)
    return config
