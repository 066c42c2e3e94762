"""Gradient attacks on a trained state: one-step FGSM and L∞ PGD, per example, on device.

Both attack the loss the paper's FGSM used (BCE between the softmax and the one-hot label) in
one of two spaces (`FGSM_SPACES`):

- "normalized" (the authors' code): on the normalised model input (after per-channel
  standardisation, before any whitening), unclipped;
- "pixel": on the image in [0, 1], the gradient taken through the normalisation, the result
  clipped to [0, 1].

FGSM: x_adv = x + ε·sign(∇_x loss). PGD (Madry et al. 2018): from x (or, with a random start,
x + ε·u with u ~ U[−1, 1] per input, drawn on the host so the result does not depend on the
device count), `steps` times x ← Π(x + α·sign(∇_x loss)), Π the projection onto the L∞ ball of
radius ε around x (and onto [0, 1] in pixel space). One step with α = ε and no random start is
FGSM exactly.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp

from mmix_jax.input_space import InputSpace
from mmix_jax.losses import bce_loss

Batch = dict[str, jax.Array]
FGSM_SPACES = ("normalized", "pixel")


def _check_space(attack_space: str, attack: str) -> None:
    if attack_space not in FGSM_SPACES:
        raise ValueError(f"{attack} space {attack_space!r}: choose one of {FGSM_SPACES}.")


def pgd_logits_fn(space: InputSpace, epsilon: float, steps: int, step_size: float,
                  attack_space: str = "normalized") -> Callable[..., jax.Array]:
    """Logits on the PGD examples of a batch; a batch with a "start" entry (U[−1, 1], the
    images' shape) starts at x + ε·start, one without it at x."""
    _check_space(attack_space, "PGD")
    if steps < 1 or epsilon < 0 or step_size <= 0:
        raise ValueError(f"PGD needs steps >= 1, ε >= 0 and a positive step size; got steps="
                         f"{steps}, ε={epsilon}, step size={step_size}.")

    def fn(state, batch: Batch, constants: Optional[dict] = None) -> jax.Array:
        def logits_of(inputs: jax.Array) -> jax.Array:
            return state.apply_fn(state.variables(), inputs, train=False)

        if attack_space == "normalized":
            def to_model(x: jax.Array) -> jax.Array:
                return space.from_normalized(x, constants)
            project = lambda x: x  # noqa: E731 (unclipped, as the authors' FGSM)
            origin = space.normalized(space.to_pixels(batch["image"]))
        else:
            def to_model(x: jax.Array) -> jax.Array:
                return space.to_model(x, constants)
            project = space.clip
            origin = space.to_pixels(batch["image"])

        def loss(x: jax.Array) -> jax.Array:
            logits = logits_of(to_model(x))
            return bce_loss(logits, jax.nn.one_hot(batch["label"], logits.shape[-1]))

        def step(_, x: jax.Array) -> jax.Array:
            moved = x + step_size * jnp.sign(jax.grad(loss)(x))
            return project(jnp.clip(moved, origin - epsilon, origin + epsilon))

        start = origin
        if "start" in batch:
            start = project(origin + epsilon * batch["start"].astype(jnp.float32))
        return logits_of(to_model(jax.lax.fori_loop(0, steps, step, start)))

    return fn


def fgsm_logits_fn(space: InputSpace, epsilon: float,
                   attack_space: str = "normalized") -> Callable[..., jax.Array]:
    """Logits on the FGSM examples of a batch: ε in the units of `attack_space`."""
    _check_space(attack_space, "FGSM")

    def fn(state, batch: Batch, constants: Optional[dict] = None) -> jax.Array:
        def logits_of(inputs: jax.Array) -> jax.Array:
            return state.apply_fn(state.variables(), inputs, train=False)

        def attacked(x: jax.Array, to_model: Callable[[jax.Array], jax.Array]) -> jax.Array:
            def loss(x: jax.Array) -> jax.Array:
                logits = logits_of(to_model(x))
                return bce_loss(logits, jax.nn.one_hot(batch["label"], logits.shape[-1]))
            return x + epsilon * jnp.sign(jax.grad(loss)(x))

        pixels = space.to_pixels(batch["image"])
        if attack_space == "normalized":
            from_normalized = lambda x: space.from_normalized(x, constants)  # noqa: E731
            return logits_of(from_normalized(attacked(space.normalized(pixels),
                                                      from_normalized)))
        to_model = lambda x: space.to_model(x, constants)  # noqa: E731
        return logits_of(to_model(space.clip(attacked(pixels, to_model))))

    return fn


def madry_step_size(epsilon: float, steps: int, factor: float = 2.5) -> float:
    """α = factor·ε/steps (Madry et al. 2018 use 2.5): enough to reach the ball's boundary
    from any start; with one step it is ≥ ε, which the projection makes FGSM's step."""
    return factor * epsilon / steps


__all__ = ["FGSM_SPACES", "fgsm_logits_fn", "madry_step_size", "pgd_logits_fn"]
