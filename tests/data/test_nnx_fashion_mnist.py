"""mmix_jax.nnx on real data: an NNX CNN written without our contract trains on Fashion-MNIST."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from shared_data import FASHION_MNIST, needs_fashion_mnist
from tiny_models import SmallCNN

import mmix_jax.nnx as mnnx
from mmix_jax.mixup import MixSpec


@needs_fashion_mnist
def test_nnx_cnn_trains_one_epoch_of_fashion_mnist_with_manifold_mixup(fashion_data_dir):
    """Real data: one epoch over 10,000 training images, loss falling, accuracy above chance."""
    from mmix_jax.data.augment import normalize
    from mmix_jax.data.datasets import DataSpec, load_dataset

    splits = load_dataset(DataSpec(name="fashion_mnist", data_dir=str(fashion_data_dir),
                                   manual_dir=str(FASHION_MNIST), labels_per_class=1000), seed=0)
    model = mnnx.mixable(SmallCNN(nnx.Rngs(0)), points=("conv1", "blocks/0"))
    optimizer = nnx.Optimizer(model, optax.sgd(0.1, momentum=0.9, nesterov=True),
                              wrt=nnx.Param)
    spec = MixSpec(num_classes=10, alpha=2.0, mix_layers=(0, 1, 2), loss="soft_ce")
    order = np.random.default_rng(0).permutation(len(splits.train))
    losses = []
    model.train()
    for step in range(len(order) // 100):
        rows = order[step * 100:(step + 1) * 100]
        images = normalize(jnp.asarray(splits.train.images[rows]), splits.mean, splits.std)
        batch = {"image": images, "label": jnp.asarray(splits.train.labels[rows])}
        losses.append(float(mnnx.mixup_step(model, optimizer, batch, jax.random.key(step),
                                            config=spec)["loss"]))
    model.eval()
    test = normalize(jnp.asarray(splits.test.images), splits.mean, splits.std)
    accuracy = float(jnp.mean(jnp.argmax(model(test), -1) == splits.test.labels))
    # Cross-entropy against mixed targets has a floor well above 0 (the targets' entropy):
    # the test asks for a fall far beyond the spread of ten steps.
    print("loss first/last 10:", np.mean(losses[:10]), np.mean(losses[-10:]), "acc", accuracy)
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 5 * np.std(losses[-10:])
    assert accuracy > 0.4  # chance is 0.1
