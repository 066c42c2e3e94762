"""The smallest instances of our architectures: one block per stage, same code paths (stem,
strided stages with projection shortcuts, BatchNorm, head, four mix points) as PreActResNet18
and -50, at a fraction of their compile time."""

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from mmix_jax.mixup import maybe_mix
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


class CountingNet(nn.Module):
    """A native model with state beyond BatchNorm: a call counter in its own collection
    ("counters", advanced by each training pass), a BatchNorm, and an activation penalty
    `penalty · mean(h²)` sown into "losses"."""

    num_classes: int = 3
    penalty: float = 0.01

    @nn.compact
    def __call__(self, x, *, train, mix_layer=None, perm=None, lam=None):
        calls = self.variable("counters", "calls", lambda: jnp.zeros((), jnp.int32))
        if train and not self.is_initializing():
            calls.value += 1
        x = maybe_mix(x.reshape(x.shape[0], -1), 0, mix_layer, perm, lam)
        h = nn.relu(nn.BatchNorm(use_running_average=not train)(nn.Dense(8)(x)))
        h = maybe_mix(h, 1, mix_layer, perm, lam)
        self.sow("losses", "activation_penalty", self.penalty * jnp.mean(jnp.square(h)))
        return nn.Dense(self.num_classes)(h)
