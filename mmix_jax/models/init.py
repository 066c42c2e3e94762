"""Parameter initialisation schemes for any Flax model: "he" (the model's own) or "torch".

"torch" redraws parameters as PyTorch's layer defaults would (the authors' code keeps them):
every kernel (Conv, Dense) and its bias ~ U(±1/√fan_in), fan_in = the product of the kernel's
shape but its last axis; BatchNorm scale 1 and bias 0. It works on the parameter tree alone, so
it applies to any model whose kernels are named `kernel` with a sibling `bias`, and keeps the
tree's structure (checkpoints and shardings are unchanged).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import traverse_util

INIT_SCHEMES = ("he", "torch")


def torch_default_init(params: Any, rng: jax.Array) -> Any:
    """`params` redrawn as PyTorch's defaults (module docstring); other leaves kept as they are."""
    flat = traverse_util.flatten_dict(params)
    kernels = {path[:-1]: leaf for path, leaf in flat.items() if path[-1] == "kernel"}
    redrawn = {}
    for index, (path, leaf) in enumerate(sorted(flat.items())):
        owner, name = path[:-1], path[-1]
        if name == "kernel":
            fan_in = math.prod(leaf.shape[:-1])
        elif name == "bias" and owner in kernels:
            fan_in = math.prod(kernels[owner].shape[:-1])
        elif name == "scale":  # BatchNorm / LayerNorm
            redrawn[path] = jnp.ones_like(leaf)
            continue
        elif name == "bias":
            redrawn[path] = jnp.zeros_like(leaf)
            continue
        else:
            redrawn[path] = leaf
            continue
        bound = 1.0 / math.sqrt(fan_in)
        redrawn[path] = jax.random.uniform(jax.random.fold_in(rng, index), leaf.shape,
                                           leaf.dtype, -bound, bound)
    return traverse_util.unflatten_dict(redrawn)


def initialize_params(params: Any, scheme: str, rng: jax.Array) -> Any:
    """The model's parameters under `scheme` (INIT_SCHEMES): "he" keeps them."""
    if scheme == "he":
        return params
    if scheme == "torch":
        return torch_default_init(params, rng)
    raise ValueError(f"init scheme {scheme!r}: choose one of {INIT_SCHEMES}.")
