"""The training state: step, params, batch_stats, opt_state and an optional mean teacher.

apply_fn and tx are static. `teacher` is None, or {"params", "batch_stats"} of an exponential
moving average of the weights (ICT's mean teacher): checkpointed and restored with the rest.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from mmix_jax.models.init import initialize_params


class TrainState(train_state.TrainState):
    """flax's TrainState plus the BatchNorm running statistics ({} for models without BN)."""

    batch_stats: Any = None
    teacher: Any = None

    def variables(self, params: Any = None) -> dict[str, Any]:
        """The variables dict for `apply_fn`, with `params` in place of the state's if given."""
        variables = {"params": self.params if params is None else params}
        if self.batch_stats:
            variables["batch_stats"] = self.batch_stats
        return variables

    def teacher_variables(self) -> dict[str, Any]:
        """The variables dict of the mean teacher (ValueError if the state has none)."""
        if self.teacher is None:
            raise ValueError("this TrainState has no teacher: build it with with_teacher(state).")
        variables = {"params": self.teacher["params"]}
        if self.teacher["batch_stats"]:
            variables["batch_stats"] = self.teacher["batch_stats"]
        return variables

    def as_teacher(self) -> "TrainState":
        """The state with the teacher's weights in place of the student's (for evaluation)."""
        return self.replace(params=self.teacher["params"],
                            batch_stats=self.teacher["batch_stats"])


def with_teacher(state: TrainState) -> TrainState:
    """`state` with a mean teacher that starts as a copy of its params and batch_stats."""
    copy = jax.tree.map(jnp.copy, {"params": state.params, "batch_stats": state.batch_stats})
    return state.replace(teacher=copy)


def create_train_state(model: nn.Module, tx: optax.GradientTransformation, rng: jax.Array,
                       example_input: jax.Array, init: str = "he") -> TrainState:
    """Initialises `model` on `example_input` ([B, ...], values unused) and the optimizer state.

    `init`: "he" keeps the model's own initialisers; "torch" redraws the parameters as
    PyTorch's layer defaults (mmix_jax.models.init), as the paper's code had them.
    """
    variables = model.init(rng, jnp.zeros_like(example_input), train=False)
    params = initialize_params(variables["params"], init, jax.random.fold_in(rng, 1))
    state = TrainState.create(apply_fn=model.apply, params=params, tx=tx,
                              batch_stats=variables.get("batch_stats", {}))
    # A concrete int32 step (not Python's 0): the state entering step 1 then has the same
    # signature as every later one, and the jitted step compiles once.
    return state.replace(step=jnp.zeros((), jnp.int32))
