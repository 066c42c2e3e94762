"""Vision Transformer (Dosovitskiy et al. 2021) in big_vision's form, with mix points.

A strided convolution cuts the image into patches and embeds them, a class token is prepended
(`pool="token"`) or not (`pool="gap"`: mean over tokens), learned position embeddings are added,
and `depth` pre-LayerNorm blocks follow (multi-head self-attention, then an MLP, each on a
residual branch with optional dropout and stochastic depth). A final LayerNorm, the pooling and
a zero-initialised linear head give the logits. Parameters are float32; computation is in `dtype`.

Mix points (`num_mix_points` = depth + 2):
- 0: the input image;
- 1: the token sequence after the patch and position embedding, [B, tokens, width];
- 1 + j: the output of block j (j = 1..depth), [B, tokens, width].

A point after every block, not after groups of them: the blocks are identical residual updates
of one token sequence, so no block boundary is more natural than another, and the eligible set
(early, middle, late) is then the config's choice, at no cost for the points not eligible.

Stochastic depth drops a whole residual branch per example with a rate rising linearly from 0
(first block) to `stochastic_depth` (last block), scaling the kept ones by 1/(1 − rate). It
draws from its own RNG stream, "drop_path" (name it in `MixSpec.rng_streams`); dropout draws
from "dropout".
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmix_jax.models.base import Dtype, MixableModel

POOLS = ("token", "gap")
DROP_PATH_STREAM = "drop_path"

# name → (width, depth, heads, MLP width): ViT-Ti/S/B as in the ViT and DeiT papers, and a
# small one for CPU studies on 28×28 images (with patch_size 4: 49 tokens).
SIZES: dict[str, tuple[int, int, int, int]] = {
    "ti": (192, 12, 3, 768),
    "s": (384, 12, 6, 1536),
    "b": (768, 12, 12, 3072),
    "mini": (64, 4, 4, 256),
}


def dense(features: int, dtype: Dtype, name: str, zero: bool = False) -> nn.Dense:
    """A Dense layer with big_vision's initialisers (Xavier-uniform kernels, zero biases)."""
    return nn.Dense(features, dtype=dtype, param_dtype=jnp.float32, name=name,
                    kernel_init=nn.initializers.zeros if zero else nn.initializers.xavier_uniform(),
                    bias_init=nn.initializers.zeros)


class DropPath(nn.Module):
    """Stochastic depth: each example's residual branch is dropped with probability `rate`
    (the kept ones scaled by 1/(1 − rate)), drawing from the "drop_path" stream."""

    rate: float

    @nn.compact
    def __call__(self, branch: jax.Array, train: bool) -> jax.Array:
        if not train or self.rate == 0.0:
            return branch
        keep = 1.0 - self.rate
        shape = (branch.shape[0],) + (1,) * (branch.ndim - 1)
        mask = jax.random.bernoulli(self.make_rng(DROP_PATH_STREAM), keep, shape)
        return jnp.where(mask, branch / keep, jnp.zeros_like(branch))


class PatchEmbedding(nn.Module):
    """Patches embedded by a strided convolution, a class token (with `cls_token`) and learned
    position embeddings: [B, H, W, C] → [B, tokens, width]."""

    width: int
    patch_size: int
    cls_token: bool
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        patches = nn.Conv(self.width, (self.patch_size,) * 2, strides=(self.patch_size,) * 2,
                          padding="VALID", dtype=self.dtype, param_dtype=jnp.float32,
                          name="patches")(images)
        batch, rows, cols, width = patches.shape
        x = patches.reshape(batch, rows * cols, width)
        if self.cls_token:
            cls = self.param("cls", nn.initializers.zeros, (1, 1, width), jnp.float32)
            x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (batch, 1, width)), x],
                                axis=1)
        position = self.param("position", nn.initializers.normal(stddev=width ** -0.5),
                              (1, x.shape[1], width), jnp.float32)
        return x + position.astype(x.dtype)


class EncoderBlock(nn.Module):
    """x + DropPath(Attention(LN(x))), then x + DropPath(MLP(LN(x)))."""

    num_heads: int
    mlp_dim: int
    dropout_rate: float = 0.0
    drop_path_rate: float = 0.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        width = x.shape[-1]
        h = nn.LayerNorm(dtype=self.dtype, param_dtype=jnp.float32, name="norm_attention")(x)
        h = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads, dtype=self.dtype, param_dtype=jnp.float32,
            kernel_init=nn.initializers.xavier_uniform(), deterministic=True,
            name="attention")(h, h)
        h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
        x = x + DropPath(self.drop_path_rate, name="drop_path_attention")(h, train)
        h = nn.LayerNorm(dtype=self.dtype, param_dtype=jnp.float32, name="norm_mlp")(x)
        h = nn.gelu(dense(self.mlp_dim, self.dtype, "mlp_in")(h))
        h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
        h = nn.Dropout(self.dropout_rate, deterministic=not train)(
            dense(width, self.dtype, "mlp_out")(h))
        return x + DropPath(self.drop_path_rate, name="drop_path_mlp")(h, train)


class ViT(MixableModel):
    """A ViT; `size` ("ti", "s", "b", "mini") sets width, depth, heads and MLP width unless
    they are given."""

    num_classes: int
    patch_size: int = 16
    width: int = 64
    depth: int = 4
    num_heads: int = 4
    mlp_dim: int = 256
    pool: str = "token"
    dropout_rate: float = 0.0
    stochastic_depth: float = 0.0
    dtype: Dtype = jnp.float32

    @property
    def num_mix_points(self) -> int:
        return self.depth + 2

    @property
    def rng_streams(self) -> tuple[str, ...]:
        return ("dropout", DROP_PATH_STREAM) if self.stochastic_depth > 0 else ("dropout",)

    def setup(self):
        if self.pool not in POOLS:
            raise ValueError(f"ViT pool {self.pool!r}: choose one of {POOLS}.")
        if self.width % self.num_heads:
            raise ValueError(f"ViT width {self.width} is not a multiple of num_heads "
                             f"{self.num_heads}.")
        if not 0.0 <= self.stochastic_depth < 1.0:
            raise ValueError(f"ViT stochastic_depth {self.stochastic_depth}: must be in [0, 1).")
        self.embedding = PatchEmbedding(self.width, self.patch_size, self.pool == "token",
                                        self.dtype)
        rates = [self.stochastic_depth * j / max(self.depth - 1, 1) for j in range(self.depth)]
        self.blocks = [EncoderBlock(self.num_heads, self.mlp_dim, self.dropout_rate, rate,
                                    self.dtype, name=f"block{j + 1}")
                       for j, rate in enumerate(rates)]
        self.norm = nn.LayerNorm(dtype=self.dtype, param_dtype=jnp.float32, name="norm")
        self.head = dense(self.num_classes, self.dtype, "head", zero=True)

    def segment(self, index: int, h: jax.Array, train: bool) -> jax.Array:
        if index == 0:
            return self.embedding(h)
        if index <= self.depth:
            return self.blocks[index - 1](h, train)
        h = self.norm(h)
        return self.head(h[:, 0] if self.pool == "token" else jnp.mean(h, axis=1))


def vit(size: str, **kwargs: Any) -> ViT:
    """ViT of a named size (SIZES) with `kwargs` for the rest (num_classes, patch_size, ...)."""
    if size not in SIZES:
        raise ValueError(f"unknown ViT size {size!r}: choose one of {sorted(SIZES)}.")
    width, depth, heads, mlp = SIZES[size]
    return ViT(**{"width": width, "depth": depth, "num_heads": heads, "mlp_dim": mlp, **kwargs})
