"""model.init = "torch": PyTorch's layer defaults, U(±1/√fan_in) for kernels and their biases."""

import math

import jax
import numpy as np

from mmix_jax.models import get_model
from mmix_jax.models.init import torch_default_init


def test_torch_init_bounds_and_spread_follow_fan_in():
    model = get_model("wrn", depth=10, widen_factor=2, num_classes=10, style="authors")
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros((1, 8, 8, 3)),
                                               train=False))
    variables = jax.tree.map(lambda leaf: np.full(leaf.shape, 7.0, leaf.dtype), shapes)
    params = jax.jit(torch_default_init)(variables["params"], jax.random.key(1))
    assert jax.tree.structure(params) == jax.tree.structure(variables["params"])
    conv = params["groups_1"]["block0"]["Conv_1"]  # 3×3, 64 → 64 channels: fan_in = 576
    assert conv["kernel"].shape == (3, 3, 64, 64)
    bound = 1 / math.sqrt(3 * 3 * 64)
    for leaf in (conv["kernel"], conv["bias"]):
        values = np.asarray(leaf)
        assert np.abs(values).max() <= bound
    # U(−b, b) has variance b²/3: the 36,864 kernel entries come within 5 % of it.
    np.testing.assert_allclose(np.asarray(conv["kernel"]).var(), bound ** 2 / 3, rtol=0.05)
    head = params["head"]["Dense_0"]  # Linear 128 → 10: bound 1/√128 for weight and bias
    assert np.abs(np.asarray(head["kernel"])).max() <= 1 / math.sqrt(128)
    assert np.abs(np.asarray(head["bias"])).max() <= 1 / math.sqrt(128)
    assert np.abs(np.asarray(head["bias"])).max() > 0  # biases are drawn, not zero
    norm = params["head"]["BatchNorm_0"]
    np.testing.assert_array_equal(np.asarray(norm["scale"]), 1.0)
    np.testing.assert_array_equal(np.asarray(norm["bias"]), 0.0)
