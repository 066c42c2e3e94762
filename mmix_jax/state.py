"""The training state: step, params, model_state, opt_state and an optional mean teacher.

`model_state` holds every collection of the model's variables other than params (BatchNorm's
`batch_stats`, or any other the model creates at init; {} for a model with none), and the train
steps update each of them. apply_fn and tx are static. `teacher` is None, or {"params",
"model_state"} of an exponential moving average of the weights (ICT's mean teacher),
checkpointed and restored with the rest.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training import train_state

from mmix_jax.models.init import initialize_params
from mmix_jax.variables import mode_kwargs, model_state_of, variables_of


class TrainState(train_state.TrainState):
    """flax's TrainState plus the model's other collections (`model_state`) and a teacher."""

    model_state: dict[str, Any] = struct.field(default_factory=dict)
    teacher: Any = None

    @property
    def batch_stats(self) -> Any:
        """The BatchNorm running statistics ({} for a model without BatchNorm)."""
        return self.model_state.get("batch_stats", {})

    def variables(self, params: Any = None) -> dict[str, Any]:
        """The variables dict for `apply_fn`, with `params` in place of the state's if given."""
        return variables_of(self, self.params if params is None else params)

    def teacher_variables(self) -> dict[str, Any]:
        """The variables dict of the mean teacher (ValueError if the state has none)."""
        if self.teacher is None:
            raise ValueError("this TrainState has no teacher: build it with with_teacher(state).")
        return {"params": self.teacher["params"], **self.teacher["model_state"]}

    def as_teacher(self) -> "TrainState":
        """The state with the teacher's weights in place of the student's (for evaluation)."""
        return self.replace(params=self.teacher["params"],
                            model_state=self.teacher["model_state"])


def with_teacher(state: TrainState) -> TrainState:
    """`state` with a mean teacher that starts as a copy of its params and model_state."""
    copy = jax.tree.map(jnp.copy, {"params": state.params, "model_state": state.model_state})
    return state.replace(teacher=copy)


def create_train_state(model: nn.Module, tx: optax.GradientTransformation, rng: jax.Array,
                       example_input: jax.Array, init: str = "he") -> TrainState:
    """Initialises `model` on `example_input` ([B, ...], values unused) and the optimizer state.

    The model is initialised in evaluation mode (`train=False`, or `deterministic=True` for a
    model with flax's flag). `init`: "he" keeps the model's own initialisers; "torch" redraws
    the parameters as PyTorch's layer defaults (mmix_jax.models.init), as the paper's code had
    them.
    """
    variables = model.init(rng, jnp.zeros_like(example_input), **mode_kwargs(model, {"train": False}))
    params = initialize_params(variables["params"], init, jax.random.fold_in(rng, 1))
    state = TrainState.create(apply_fn=model.apply, params=params, tx=tx,
                              model_state=model_state_of(variables))
    # A concrete int32 step (not Python's 0): the state entering step 1 then has the same
    # signature as every later one, and the jitted step compiles once.
    return state.replace(step=jnp.zeros((), jnp.int32))
