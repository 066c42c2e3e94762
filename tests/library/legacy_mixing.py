"""The mixing as it was before the select (mmix_jax ≤ 738f2aa), to compare against in one process.

Then a traced k was a `lax.cond` at every mix point of the model (eligible or not), λ came from
`jax.random.beta` (a rejection `while` loop per gamma), the model received the bare traced k,
and `mix` rounded λ to h's dtype and differentiated h[perm] as a scatter-add.
`legacy_mixing()` swaps those back in for the duration of a `with` block (tracing included:
build and call the step inside it). Used by the tests that check the new mixing equals the old
bit for bit for a fixed (k, λ, perm), and that the export check catches the old control flow.
(Until 6d2a9ce, `scripts/benchmark.py --legacy` also timed it: docs/performance.md.)
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional, Sequence

import jax
import jax.numpy as jnp

import mmix_jax.mixup as mixup_module
import mmix_jax.models.base as base_module
import mmix_jax.nnx as nnx_module
import mmix_jax.wrap as wrap_module
from mmix_jax.mixup import MixDraw, MixPoint


def old_mix(h: jax.Array, perm: jax.Array, lam: jax.Array) -> jax.Array:
    """The old `mix`: in h's dtype (λ rounded to it), the gather's gradient a scatter-add."""
    lam = jnp.asarray(lam, h.dtype)
    return h + (1 - lam) * (h[perm] - h)


def cond_maybe_mix(h: jax.Array, point: int, mix_layer: Any, perm: Optional[jax.Array],
                   lam: Optional[jax.Array]) -> jax.Array:
    """The old `maybe_mix`: a static choice for a Python int, a `lax.cond` for a traced k
    (recording the point it is at, as the steps' mix-point check expects of any model)."""
    if mix_layer is None:
        return h
    for visited in getattr(mixup_module._RECORDERS, "stack", ()):
        visited.add(point)
    if isinstance(mix_layer, MixPoint):
        mix_layer = mix_layer.index
    if isinstance(mix_layer, int):
        return old_mix(h, perm, lam) if mix_layer == point else h
    return jax.lax.cond(jnp.asarray(mix_layer) == point,
                        lambda x: old_mix(x, perm, lam), lambda x: x, h)


def _bare_layer_kwargs(draw: MixDraw, eligible: Sequence[int], mixing: str = "auto"
                       ) -> dict[str, Any]:
    """The old model arguments: the bare traced k, whatever the eligible set."""
    del mixing
    if not tuple(eligible):
        return {}
    return {"mix_layer": draw.layer, "perm": draw.perm, "lam": draw.lam}


def _loop_beta(key: jax.Array, alpha: float, shape: tuple[int, ...] = (), candidates: int = 0
               ) -> jax.Array:
    del candidates
    return jax.random.beta(key, alpha, alpha, shape, dtype=jnp.float32)


@contextlib.contextmanager
def legacy_mixing() -> Iterator[None]:
    """Inside the block, steps traced use the old conds, bare k and `jax.random.beta`."""
    saved = [(module, name, getattr(module, name)) for module, name in (
        (base_module, "maybe_mix"), (wrap_module, "maybe_mix"), (nnx_module, "maybe_mix"),
        (mixup_module, "symmetric_beta"))]
    saved_kwargs = MixDraw.model_kwargs
    try:
        for module, name, _ in saved[:3]:
            setattr(module, name, cond_maybe_mix)
        mixup_module.symmetric_beta = _loop_beta
        MixDraw.model_kwargs = _bare_layer_kwargs
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)
        MixDraw.model_kwargs = saved_kwargs


__all__ = ["cond_maybe_mix", "legacy_mixing", "old_mix"]
