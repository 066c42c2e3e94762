"""A jitted train step run over many keys: the state it ends in, the mix points it drew and
every step's metrics (for the one-compile-for-every-k checks)."""


def train_drawing_points(step, state, batch, keys):
    """`state` after `step(state, batch, key)` for each key in turn; the set of mix points the
    steps drew (metrics["mix_layer"]) and the list of their metrics."""
    drawn, history = set(), []
    for key in keys:
        state, metrics = step(state, batch, key)
        drawn.add(int(metrics["mix_layer"]))
        history.append(metrics)
    return state, drawn, history
