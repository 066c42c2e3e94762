"""Model FLOP counting (mmix_jax.evaluation.flops) against hand-computed values and the architecture."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from mmix_jax.evaluation import flops
from mmix_jax.models import get_model


class OneConv(nn.Module):
    features: int
    kernel: tuple
    strides: int = 1
    padding: str = "SAME"
    groups: int = 1

    @nn.compact
    def __call__(self, x, train):
        return nn.Conv(self.features, self.kernel, self.strides, self.padding,
                       feature_group_count=self.groups, use_bias=False)(x)


@pytest.mark.parametrize("module, shape, expected", [
    # 10×10 outputs × 8 filters, each 3·3·3 multiply-adds.
    (OneConv(8, (3, 3)), (10, 10, 3), 2 * 10 * 10 * 8 * 3 * 3 * 3),
    # VALID, stride 2 on 9×9: 4×4 outputs.
    (OneConv(4, (3, 3), strides=2, padding="VALID"), (9, 9, 2), 2 * 4 * 4 * 4 * 3 * 3 * 2),
    # two groups: each of the 6 filters sees 4 / 2 = 2 input channels.
    (OneConv(6, (3, 3), groups=2), (5, 5, 4), 2 * 5 * 5 * 6 * 3 * 3 * 2),
])
def test_conv_flops_match_hand_count(module, shape, expected):
    assert flops.forward_flops_per_example(module, shape) == expected


class OneDense(nn.Module):
    @nn.compact
    def __call__(self, x, train):
        return nn.Dense(7)(x)


def test_dense_and_batched_products_match_hand_count():
    assert flops.forward_flops_per_example(OneDense(), (5,)) == 2 * 5 * 7
    # A batched product [3, 4, 5] × [3, 5, 6]: 3·4·6 outputs of 5 multiply-adds each.
    jaxpr = jax.make_jaxpr(jnp.matmul)(jnp.zeros((3, 4, 5)), jnp.zeros((3, 5, 6))).jaxpr
    assert flops.jaxpr_product_flops(jaxpr) == 2 * 3 * 4 * 6 * 5


def test_cond_counts_the_costliest_branch_and_scan_its_length():
    a, b = jnp.zeros((4, 8)), jnp.zeros((8, 16))

    def branchy(pred, a, b):
        return jax.lax.cond(pred, lambda: a @ b, lambda: a[:, :2] @ b[:2])  # one runs

    assert flops.jaxpr_product_flops(jax.make_jaxpr(branchy)(True, a, b).jaxpr) == 2 * 4 * 16 * 8

    def scanned(a, b):
        return jax.lax.scan(lambda c, _: (c, c @ b), a, length=5)[1]

    assert flops.jaxpr_product_flops(jax.make_jaxpr(scanned)(a, b).jaxpr) == 5 * 2 * 4 * 16 * 8


def test_while_loop_with_products_is_refused():
    def looped(a):
        return jax.lax.while_loop(lambda c: c[0, 0] < 1.0, lambda c: c @ c, a)

    with pytest.raises(ValueError, match="while loop"):
        flops.jaxpr_product_flops(jax.make_jaxpr(looped)(jnp.zeros((3, 3))).jaxpr)


def preact_resnet18_flops_from_architecture(num_classes: int = 10) -> int:
    """The CIFAR PreActResNet18 written out layer by layer: 3×3 stem to 64 channels, four stages
    of two basic blocks (64, 128, 256, 512 channels at 32², 16², 8², 4²), a 1×1 projection where
    the shape changes, global pooling, a dense head."""
    macs = 32 * 32 * 3 * 64 * 9
    c_in, size = 64, 32
    for stage, width in enumerate((64, 128, 256, 512)):
        size = size if stage == 0 else size // 2
        macs += size * size * c_in * width * 9 + size * size * width * width * 9  # block 0
        if c_in != width:
            macs += size * size * c_in * width  # projection shortcut
        macs += 2 * size * size * width * width * 9  # block 1
        c_in = width
    macs += 512 * num_classes
    return 2 * macs


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_preact_resnet18_matches_its_architecture(dtype):
    model = get_model("preactresnet18", num_classes=10, dtype=dtype)
    counted = flops.forward_flops_per_example(model, (32, 32, 3))
    assert counted == preact_resnet18_flops_from_architecture()
    assert counted / 2 == pytest.approx(555.42e6, rel=1e-4)  # the published ResNet18-CIFAR MACs
    assert flops.train_flops_per_example(model, (32, 32, 3)) == 3 * counted


@pytest.mark.parametrize("kind, dtype, expected", [
    ("NVIDIA H100 80GB HBM3", "bfloat16", 989.4e12),
    ("NVIDIA H100 PCIe", "bfloat16", 756.5e12),  # not taken for the SXM part
    ("NVIDIA H200", "float32", 494.7e12),
    ("cpu", "float32", None),
    ("NVIDIA H100 80GB HBM3", "float16x", None),
])
def test_peak_lookup_by_device_kind_and_dtype(kind, dtype, expected):
    assert flops.peak_flops_per_s(kind, dtype) == expected
