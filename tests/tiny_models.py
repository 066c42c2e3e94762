"""The smallest instances of our architectures: one block per stage, same code paths (stem,
strided stages with projection shortcuts, BatchNorm, head, four mix points) as PreActResNet18
and -50, at a fraction of their compile time."""

import jax
import jax.numpy as jnp
from flax import nnx

from mmix_jax.models.plain import PlainPreActResNet18
from mmix_jax.models.preact_resnet import PreActBasicBlock, PreActBottleneck, PreActResNet

ONE_BLOCK_PER_STAGE = (1, 1, 1, 1)


def tiny_preact(num_classes=5, width=4, bottleneck=False, **kwargs):
    """PreActResNet with one basic (or bottleneck) block per stage."""
    block = PreActBottleneck if bottleneck else PreActBasicBlock
    return PreActResNet(stage_sizes=ONE_BLOCK_PER_STAGE, block=block, num_classes=num_classes,
                        width=width, **kwargs)


def tiny_plain(num_classes=5, width=4, **kwargs):
    """The same network written as plain Linen (no mixing contract): a user's own model whose
    variables are exactly `tiny_preact`'s."""
    return PlainPreActResNet18(num_classes=num_classes, width=width,
                               stage_sizes=ONE_BLOCK_PER_STAGE, **kwargs)


class SmallCNN(nnx.Module):
    """An NNX model written without our contract."""

    def __init__(self, rngs: nnx.Rngs, classes: int = 10):
        self.conv1 = nnx.Conv(1, 8, (3, 3), strides=(2, 2), rngs=rngs)
        self.blocks = nnx.List([nnx.Conv(8, 16, (3, 3), strides=(2, 2), rngs=rngs),
                                nnx.BatchNorm(16, momentum=0.9, rngs=rngs)])
        self.head = nnx.Linear(16, classes, rngs=rngs)

    def __call__(self, x):
        h = jax.nn.relu(self.conv1(x))
        h = jax.nn.relu(self.blocks[1](self.blocks[0](h)))
        return self.head(jnp.mean(h, axis=(1, 2)))
