"""Model FLOPs and device peaks: the two numbers model-FLOPs utilisation (MFU) divides.

Model FLOPs are what the network needs, not what XLA happens to execute, so MFU compares runs
and libraries fairly. They are counted from the forward pass's jaxpr:

- only `conv_general_dilated` and `dot_general` count (BatchNorm, activations, pooling and the
  mixing itself are elementwise: a few percent at most of a ResNet's work);
- one multiply-add is 2 FLOPs;
- a training step costs `TRAIN_FLOPS_PER_FORWARD` = 3 forward passes (the backward pass of each
  product computes a gradient for its input and one for its weights, each as costly as the
  forward product), as in the usual MFU definition (PaLM, appendix B). The first layer's input
  gradient is counted too, although nobody computes it.

Peaks are the vendors' dense (no sparsity) tensor-core figures for the compute dtype: bfloat16
for bfloat16, TF32 for float32 (JAX's default precision lets XLA run float32 convolutions and
products on TF32 tensor cores on these GPUs).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Optional, Sequence

import flax.linen as nn
import jax
import jax.extend.core as jex
import jax.numpy as jnp

TRAIN_FLOPS_PER_FORWARD = 3

# Dense peak FLOP/s per device from the vendors' data sheets, by device_kind substring (first
# match wins, so the more specific names come first) and compute dtype.
PEAK_FLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H100 PCIe", {"bfloat16": 756.5e12, "float32": 378.0e12}),
    ("H100", {"bfloat16": 989.4e12, "float32": 494.7e12}),  # SXM5 ("NVIDIA H100 80GB HBM3")
    ("H200", {"bfloat16": 989.4e12, "float32": 494.7e12}),  # SXM, same chip as H100 SXM5
    ("A100", {"bfloat16": 312.0e12, "float32": 156.0e12}),
)


def peak_flops_per_s(device_kind: str, dtype: str) -> Optional[float]:
    """The dense peak FLOP/s of one device of `device_kind` computing in `dtype`, or None if
    this table does not know the device (pass the figure yourself, e.g. --peak-tflops)."""
    for name, peaks in PEAK_FLOPS:
        if name.lower() in device_kind.lower():
            return peaks.get(dtype)
    return None


def _product_flops(eqn: jex.JaxprEqn) -> int:
    """FLOPs of one conv_general_dilated or dot_general equation (0 for any other)."""
    out_size = math.prod(eqn.outvars[0].aval.shape)
    if eqn.primitive.name == "conv_general_dilated":
        kernel_shape = eqn.invars[1].aval.shape
        rhs_spec = eqn.params["dimension_numbers"].rhs_spec  # (out feature, in feature, spatial...)
        window = math.prod(kernel_shape[d] for d in rhs_spec[2:])
        return 2 * out_size * window * kernel_shape[rhs_spec[1]]
    if eqn.primitive.name == "dot_general":
        (lhs_contracting, _), _ = eqn.params["dimension_numbers"]
        lhs_shape = eqn.invars[0].aval.shape
        return 2 * out_size * math.prod(lhs_shape[d] for d in lhs_contracting)
    return 0


def _jaxprs_in(value: Any) -> Iterable[jex.Jaxpr]:
    if isinstance(value, jex.ClosedJaxpr):
        yield value.jaxpr
    elif isinstance(value, jex.Jaxpr):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _jaxprs_in(item)


def jaxpr_product_flops(jaxpr: jex.Jaxpr) -> int:
    """Convolution and matrix-product FLOPs of `jaxpr`, nested calls included: a `cond` counts
    its costliest branch (one runs), a `scan` its body times its length."""
    total = 0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "cond":
            total += max(jaxpr_product_flops(b) for b in _jaxprs_in(eqn.params["branches"]))
        elif name == "scan":
            total += eqn.params["length"] * jaxpr_product_flops(eqn.params["jaxpr"].jaxpr)
        elif name == "while":
            body = jaxpr_product_flops(eqn.params["body_jaxpr"].jaxpr)
            if body:
                raise ValueError("a while loop with products inside: its trip count is unknown "
                                 "to a jaxpr, so its FLOPs cannot be counted; use lax.scan.")
        else:
            total += _product_flops(eqn)
            for value in eqn.params.values():
                total += sum(jaxpr_product_flops(sub) for sub in _jaxprs_in(value))
    return total


def forward_flops_per_example(model: nn.Module, example_shape: Sequence[int],
                              dtype: Any = jnp.float32) -> int:
    """Model FLOPs of one example's forward pass (inference mode, no mixing).

    `example_shape` excludes the batch axis, e.g. (32, 32, 3). Nothing is computed: the model
    is traced on abstract values.
    """
    x = jax.ShapeDtypeStruct((1, *example_shape), dtype)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
    jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, x)
    return jaxpr_product_flops(jaxpr.jaxpr)


def train_flops_per_example(model: nn.Module, example_shape: Sequence[int],
                            dtype: Any = jnp.float32) -> int:
    """Model FLOPs of one example in a training step: TRAIN_FLOPS_PER_FORWARD forward passes."""
    return TRAIN_FLOPS_PER_FORWARD * forward_flops_per_example(model, example_shape, dtype)
