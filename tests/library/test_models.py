"""Models honour the mixing contract; parameter counts match the paper's architectures."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_models import tiny_preact

from mmix_jax.mixup import mix
from mmix_jax.models import get_model


def count_params(model, shape):
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))
    return sum(leaf.size for leaf in jax.tree.leaves(variables["params"]))


@pytest.mark.parametrize("name, expected", [
    ("preactresnet18", 11_171_146),
    ("preactresnet34", 21_279_306),
    ("wrn28_10_standard", 36_479_194),
])
def test_parameter_counts(name, expected):
    assert count_params(get_model(name, num_classes=10), (1, 32, 32, 3)) == expected


def wrn_count_by_hand(depth, k, num_classes, conv_bias):
    """From the authors' layer list (wide_resnet.py): stem conv, 3 groups of wide_basic
    (bn1, conv1 3×3, bn2, conv2 3×3, a 1×1 shortcut where the shape changes), bn, linear."""
    bias = 1 if conv_bias else 0
    total = 3 * 3 * 3 * 16 + 16 * bias
    in_planes = 16
    for planes in (16 * k, 32 * k, 64 * k):
        for block in range((depth - 4) // 6):
            total += 2 * in_planes + 9 * in_planes * planes + planes * bias
            total += 2 * planes + 9 * planes * planes + planes * bias
            if block == 0:  # stride 2 or a change of width: the 1×1 shortcut
                total += in_planes * planes + planes * bias
            in_planes = planes
    return total + 2 * in_planes + in_planes * num_classes + num_classes


def test_wrn28_10_is_the_authors_network():
    assert wrn_count_by_hand(28, 10, 10, conv_bias=True) == 36_489_290  # the figure
    assert count_params(get_model("wrn28_10", num_classes=10), (1, 32, 32, 3)) == \
        wrn_count_by_hand(28, 10, 10, conv_bias=True)
    assert count_params(get_model("wrn28_10_standard", num_classes=10), (1, 32, 32, 3)) == \
        wrn_count_by_hand(28, 10, 10, conv_bias=False)


def test_authors_wide_block_strides_the_second_conv_and_shortcuts_the_raw_input():
    from mmix_jax.models.wide_resnet import WideBlock
    block = WideBlock(features=4, strides=2, style="authors")
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    variables = block.init(jax.random.key(1), x, train=False)
    params = variables["params"]
    # conv1 keeps 8×8, conv2 halves it: its kernel sees 4 input channels, and it strides.
    out, inter = block.apply(variables, x, train=False, capture_intermediates=True)
    assert inter["intermediates"]["Conv_0"]["__call__"][0].shape == (2, 8, 8, 4)
    assert inter["intermediates"]["Conv_1"]["__call__"][0].shape == (2, 4, 4, 4)
    assert all("bias" in params[f"Conv_{i}"] for i in range(3))
    # The shortcut is a function of the raw x: with the residual branch's last conv zeroed,
    # the block's output equals the 1×1 strided conv of x (plus bias), not of relu(bn(x)).
    zeroed = jax.tree.map(lambda a: a, params)
    zeroed["Conv_1"] = {"kernel": jnp.zeros_like(params["Conv_1"]["kernel"]),
                        "bias": jnp.zeros_like(params["Conv_1"]["bias"])}
    out = block.apply(dict(variables, params=zeroed), x, train=False)
    shortcut = x[:, ::2, ::2, :] @ params["Conv_2"]["kernel"][0, 0] + params["Conv_2"]["bias"]
    np.testing.assert_allclose(np.asarray(out), np.asarray(shortcut), atol=1e-5)


def test_authors_wrn_final_batch_norm_has_pytorch_momentum_0_9():
    # PyTorch momentum 0.9: running = 0.1·running + 0.9·batch. From running mean 0 and a
    # batch mean m, one train step leaves 0.9·m in the head's BatchNorm; a block's BatchNorm
    # (PyTorch's default momentum 0.1) leaves 0.1·m.
    model = get_model("wrn", depth=10, widen_factor=1, num_classes=3, style="authors")
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 3))
    variables = model.init(jax.random.key(1), x, train=False)
    _, updates = model.apply(variables, x, train=True, mutable=["batch_stats", "intermediates"],
                             capture_intermediates=True)
    hidden = updates["intermediates"]["groups_2"]["__call__"][0]  # the head's input
    np.testing.assert_allclose(np.asarray(updates["batch_stats"]["head"]["BatchNorm_0"]["mean"]),
                               0.9 * np.asarray(jnp.mean(hidden, axis=(0, 1, 2))),
                               rtol=1e-4, atol=1e-6)
    stem = updates["intermediates"]["stem"]["__call__"][0]  # the first block's input
    np.testing.assert_allclose(
        np.asarray(updates["batch_stats"]["groups_0"]["block0"]["BatchNorm_0"]["mean"]),
        0.1 * np.asarray(jnp.mean(stem, axis=(0, 1, 2))), rtol=1e-4, atol=1e-6)


def test_mlp_parameter_count_by_hand():
    model = get_model("mlp", num_classes=10, widths=(1024,) * 7, bottleneck=12,
                      bottleneck_position=3)
    sizes = [784, 1024, 1024, 1024, 12, 1024, 1024, 1024, 1024, 10]
    expected = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    assert count_params(model, (1, 28, 28, 1)) == expected
    assert model.bottleneck_point == 4 and model.num_mix_points == 9


# Small instances of every architecture (same code paths, fast on CPU): PreActResNets with one
# basic (18, 34) or bottleneck (50, 101, 152) block per stage, WRN-10-1, a bottleneck MLP.
SMALL_MODELS = {
    "preactresnet_basic": (lambda: tiny_preact(width=4), (6, 8, 8, 3)),
    "preactresnet_bottleneck": (lambda: tiny_preact(width=2, bottleneck=True), (6, 8, 8, 3)),
    "wrn": (lambda: get_model("wrn", num_classes=5, depth=10, widen_factor=1), (6, 8, 8, 3)),
    "mlp": (lambda: get_model("mlp", num_classes=5, widths=(16, 16), bottleneck=3),
            (6, 4, 4, 1)),
}


@functools.lru_cache(maxsize=None)
def small_model(name):
    build, shape = SMALL_MODELS[name]
    model = build()
    x = jax.random.normal(jax.random.key(1), shape)
    variables = model.init(jax.random.key(0), x, train=False)
    if "batch_stats" in variables:  # non-trivial running statistics for eval mode
        variables = dict(variables, batch_stats=jax.tree.map(
            lambda v: v + 0.1 * jax.random.uniform(jax.random.key(2), v.shape),
            variables["batch_stats"]))
    return model, variables, x


def apply_fn(model, train):
    """Forward op by op (no jit): compares the arithmetic, not XLA's fusion choices."""
    def run(variables, x, k, perm, lam):
        out = model.apply(variables, x, train=train, mix_layer=k, perm=perm, lam=lam,
                          mutable=["batch_stats"] if train else False)
        return out[0] if train else out
    return run


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("name", sorted(SMALL_MODELS))
def test_lambda_one_or_identity_permutation_give_exact_erm_logits(name, train):
    model, variables, x = small_model(name)
    batch = x.shape[0]
    erm = model.apply(variables, x, train=train, mutable=["batch_stats"] if train else False)
    erm = erm[0] if train else erm
    run = apply_fn(model, train)
    reversed_perm = jnp.arange(batch)[::-1]
    for k in range(model.num_mix_points):
        at_one = run(variables, x, jnp.int32(k), reversed_perm, jnp.float32(1.0))
        identity = run(variables, x, jnp.int32(k), jnp.arange(batch), jnp.float32(0.3))
        assert (at_one == erm).all(), f"{name}: lambda=1 at point {k} changed the logits"
        assert (identity == erm).all(), f"{name}: identity perm at point {k} changed the logits"


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("name", sorted(SMALL_MODELS))
def test_mixing_at_a_point_equals_mixing_the_captured_state_by_hand(name, train):
    model, variables, x = small_model(name)
    perm = jax.random.permutation(jax.random.key(5), x.shape[0])
    lam = jnp.float32(0.3)
    mutable = ["intermediates", "batch_stats"] if train else ["intermediates"]
    _, captured = model.apply(variables, x, train=train, mutable=mutable)
    run = apply_fn(model, train)
    for k in range(model.num_mix_points):
        hidden = captured["intermediates"][f"mix_point_{k}"][0]
        by_hand = lam * hidden + (1 - lam) * hidden[perm]
        rest = model.apply(variables, by_hand, k, train=train, method="forward_from",
                           mutable=["batch_stats"] if train else False)
        rest = rest[0] if train else rest
        mixed = run(variables, x, jnp.int32(k), perm, lam)
        assert not np.allclose(mixed, run(variables, x, None, None, None)), "mixing had no effect"
        # The paper's formula rounds differently from mix()'s h + (1-lam)(h[perm] - h); train-
        # mode BatchNorm over 6 examples amplifies that to ~1e-4. A wrong point changes O(1).
        tolerance = 1e-3 if train else 2e-5
        np.testing.assert_allclose(mixed, rest, rtol=tolerance, atol=tolerance,
                                   err_msg=f"{name}: point {k}")


@pytest.mark.parametrize("name", sorted(SMALL_MODELS))
def test_traced_k_under_jit_matches_the_op_by_op_forward(name):
    """Under jit, XLA fuses differently around the cond (e.g. BatchNorm's batch reductions):
    float32 rounding only, a few ulp; op by op the λ = 1 pass is bit-exact (test above)."""
    model, variables, x = small_model(name)
    perm = jax.random.permutation(jax.random.key(5), x.shape[0])
    for train in (False, True):
        eager, jitted = apply_fn(model, train), jax.jit(apply_fn(model, train))
        for k in range(model.num_mix_points):
            args = (variables, x, jnp.int32(k), perm, jnp.float32(0.3))
            np.testing.assert_allclose(jitted(*args), eager(*args), rtol=1e-4, atol=1e-4)
        erm = jitted(variables, x, jnp.int32(0), perm, jnp.float32(1.0))
        exact = jax.jit(apply_fn(model, train))(variables, x, None, None, None)
        np.testing.assert_allclose(erm, exact, rtol=1e-5, atol=1e-5)


def test_mix_points_sow_the_state_the_next_segment_sees():
    model, variables, x = small_model("mlp")
    _, captured = model.apply(variables, x, train=False, mutable=["intermediates"])
    points = captured["intermediates"]
    assert sorted(points) == [f"mix_point_{i}" for i in range(model.num_mix_points)]
    assert points["mix_point_0"][0].shape == x.shape
    # hidden widths (16, 3, 16): the bottleneck sits in the middle, its output is point 2
    assert model.bottleneck_point == 2
    assert points["mix_point_2"][0].shape == (x.shape[0], 3)
    assert (points["mix_point_0"][0] == x).all()


def test_bfloat16_compute_with_float32_parameters():
    x = jax.random.normal(jax.random.key(1), (4, 8, 8, 3))
    model32 = tiny_preact(width=4)
    model16 = tiny_preact(width=4, dtype=jnp.bfloat16)
    variables = model32.init(jax.random.key(0), x, train=False)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(
        model16.init(jax.random.key(0), x, train=False)))
    _, captured = model16.apply(variables, x, train=False, mutable=["intermediates"])
    assert captured["intermediates"]["mix_point_2"][0].dtype == jnp.bfloat16
    out16 = model16.apply(variables, x, train=False, mix_layer=1, perm=jnp.arange(4)[::-1],
                          lam=jnp.float32(0.5))
    out32 = model32.apply(variables, x, train=False, mix_layer=1, perm=jnp.arange(4)[::-1],
                          lam=jnp.float32(0.5))
    assert out16.dtype == jnp.float32
    np.testing.assert_allclose(out16, out32, rtol=0.1, atol=0.1)


def test_wide_resnet_dropout_uses_the_dropout_rng():
    model = get_model("wrn", depth=10, widen_factor=1, num_classes=3, dropout_rate=0.5)
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
    variables = model.init(jax.random.key(0), x, train=False)

    def forward(seed):
        return model.apply(variables, x, train=True, mutable=["batch_stats"],
                           rngs={"dropout": jax.random.key(seed)})[0]

    assert (forward(0) == forward(0)).all() and not (forward(0) == forward(1)).all()
    assert (model.apply(variables, x, train=False) == model.apply(variables, x, train=False)).all()


@pytest.mark.parametrize("name, kwargs, match", [
    ("resnet9", {}, "unknown model 'resnet9'"),
    ("wrn", dict(depth=27, widen_factor=2), "6n \\+ 4"),
    ("mlp", dict(activation="swishy"), "activation 'swishy'"),
])
def test_bad_model_arguments_are_named(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        model = get_model(name, num_classes=3, **kwargs)
        model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), train=False)


def test_mixing_uses_the_given_perm_not_a_hidden_one():
    model, variables, x = small_model("mlp")
    perm = jnp.array([1, 0, 3, 2, 5, 4])
    out = model.apply(variables, x, train=False, mix_layer=0, perm=perm, lam=0.0)
    np.testing.assert_allclose(out, model.apply(variables, mix(x, perm, 0.0), train=False),
                               rtol=1e-6)


def test_imagenet_preactresnet50_has_its_hand_counted_parameters_and_1000_logits():
    """configs/imagenet.py's model, counted by hand: a 7×7 stem to 64 channels, then per
    bottleneck BN(c) + 1×1 c→w + BN(w) + 3×3 w→w + BN(w) + 1×1 w→4w (+ a 1×1 c→4w shortcut
    where the shape changes), and a 2048→1000 head; shapes only, nothing is computed."""
    import flax

    from mmix_jax.models.preact_resnet import preact_resnet

    total, channels = 7 * 7 * 3 * 64, 64
    for width, blocks in zip((64, 128, 256, 512), (3, 4, 6, 3)):
        for j in range(blocks):
            total += 2 * channels + channels * width + 2 * width + 9 * width * width
            total += 2 * width + width * 4 * width
            if j == 0:  # the first block of each stage changes the channels (and strides)
                total += channels * 4 * width
            channels = 4 * width
    total += channels * 1000 + 1000
    model = preact_resnet(50, num_classes=1000, stem_type="imagenet", dtype=jnp.bfloat16)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0),
                                                  jnp.zeros((2, 224, 224, 3)), train=False))
    counted = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(variables["params"]))
    assert counted == total
    logits = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((2, 224, 224, 3)), train=False),
                            flax.core.unfreeze(variables))
    assert logits.shape == (2, 1000)
