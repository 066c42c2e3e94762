"""configs/ssl_fashion_mnist.py shrunk for end-to-end tests: a small MLP on a tiny .npz of
8×8 images (4 classes) that the test writes; METHOD as there (default "ict": with a teacher)."""

import ml_collections

from configs import ssl_fashion_mnist


def get_config(arg: str = "ict") -> ml_collections.ConfigDict:
    config = ssl_fashion_mnist.get_config(f"{arg},epochs=40")
    config.num_classes = 4
    config.data.update(name="npz", path="", test_per_class=10, validation_per_class=5,
                       labels_per_class=5, image_shape=(8, 8, 1), crop_padding=1)
    config.model = ml_collections.ConfigDict(dict(name="mlp", widths=(32, 32), dtype="float32",
                                                  init="torch"))
    config.batch_size = 10
    config.semi_supervised.unlabeled_batch_size = 10
    if arg == "ict":  # ICT's 100 collapses this BatchNorm-free MLP to uniform outputs
        config.semi_supervised.unsupervised_weight_max = 10.0
    config.semi_supervised.supervised_layers = (0, 1)
    config.semi_supervised.unsupervised_layers = (0,) if arg == "ict" else (0, 1)
    config.eval_batch_size = 20
    config.log_every_steps = 100
    config.tensorboard = False
    config.eval.fgsm_epsilon = 0.0
    config.checkpoint.update(every_epochs=0, every_steps=50, keep=2)
    return config
