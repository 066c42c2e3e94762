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

from mmix_jax.evaluation.input_space import InputSpace
from mmix_jax.losses import bce_loss

Batch = dict[str, jax.Array]
FGSM_SPACES = ("normalized", "pixel")


def _check_space(attack_space: str, attack: str) -> None:
    if attack_space not in FGSM_SPACES:
        raise ValueError(f"{attack} space {attack_space!r}: choose one of {FGSM_SPACES}.")


def _attack_space(space: InputSpace, attack_space: str, batch: Batch,
                  constants: Optional[dict]) -> tuple[jax.Array, Callable, Callable]:
    """(the batch's clean point in the attack space, attack space → model input, projection
    onto the valid inputs of that space)."""
    if attack_space == "normalized":
        return (space.normalized(space.to_pixels(batch["image"])),
                lambda x: space.from_normalized(x, constants), lambda x: x)
    return (space.to_pixels(batch["image"]), lambda x: space.to_model(x, constants),
            space.clip)


def _check_pgd(attack_space: str, epsilon: float, steps: int, step_size: float) -> None:
    _check_space(attack_space, "PGD")
    if steps < 1 or epsilon < 0 or step_size <= 0:
        raise ValueError(f"PGD needs steps >= 1, ε >= 0 and a positive step size; got steps="
                         f"{steps}, ε={epsilon}, step size={step_size}.")


def pgd_parts(space: InputSpace, epsilon: float, step_size: float,
              attack_space: str = "normalized") -> dict[str, Callable[..., jax.Array]]:
    """PGD as three per-example functions of (state, batch[, constants]), for a loop over the
    steps run from the host: "start" → the first iterate (x, or x + ε·batch["start"]);
    "step" → the next iterate from batch["adv"]; "logits" → the logits at batch["adv"]. A
    host loop avoids a `while` in the compiled program (on XLA:CPU a while loop around the
    gradient ran about 4× slower than the same steps dispatched from Python)."""
    _check_pgd(attack_space, epsilon, 1, step_size)

    def start(state, batch: Batch, constants: Optional[dict] = None) -> jax.Array:
        origin, _, project = _attack_space(space, attack_space, batch, constants)
        if "start" not in batch:
            return origin
        return project(origin + epsilon * batch["start"].astype(jnp.float32))

    def step(state, batch: Batch, constants: Optional[dict] = None) -> jax.Array:
        origin, to_model, project = _attack_space(space, attack_space, batch, constants)

        def loss(x: jax.Array) -> jax.Array:
            logits = state.apply_fn(state.variables(), to_model(x), train=False)
            return bce_loss(logits, jax.nn.one_hot(batch["label"], logits.shape[-1]))

        moved = batch["adv"] + step_size * jnp.sign(jax.grad(loss)(batch["adv"]))
        return project(jnp.clip(moved, origin - epsilon, origin + epsilon))

    def logits(state, batch: Batch, constants: Optional[dict] = None) -> jax.Array:
        _, to_model, _ = _attack_space(space, attack_space, batch, constants)
        return state.apply_fn(state.variables(), to_model(batch["adv"]), train=False)

    return {"start": start, "step": step, "logits": logits}


def pgd_logits_fn(space: InputSpace, epsilon: float, steps: int, step_size: float,
                  attack_space: str = "normalized") -> Callable[..., jax.Array]:
    """Logits on the PGD examples of a batch, all steps in one function (a `fori_loop`); a
    batch with a "start" entry (U[−1, 1], the images' shape) starts at x + ε·start."""
    _check_pgd(attack_space, epsilon, steps, step_size)
    parts = pgd_parts(space, epsilon, step_size, attack_space)

    def fn(state, batch: Batch, constants: Optional[dict] = None) -> jax.Array:
        def body(_, adv: jax.Array) -> jax.Array:
            return parts["step"](state, dict(batch, adv=adv), constants)

        adv = jax.lax.fori_loop(0, steps, body, parts["start"](state, batch, constants))
        return parts["logits"](state, dict(batch, adv=adv), constants)

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


__all__ = ["FGSM_SPACES", "fgsm_logits_fn", "madry_step_size", "pgd_logits_fn", "pgd_parts"]
