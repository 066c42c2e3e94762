"""The ViT: its parameter count, its mix points against by-hand mixing of the token sequence,
one compile for every k, stochastic depth on its own stream, and learning."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from step_runs import train_drawing_points

import mmix_jax
from mmix_jax.models.vit import ViT

TINY = dict(num_classes=3, patch_size=4, width=16, depth=3, num_heads=2, mlp_dim=32)


def by_hand_parameter_count(width, depth, mlp, patch, channels, tokens, classes, cls=True):
    """Counted from the architecture: patch conv + bias, class token, position embeddings;
    per block two LayerNorms (scale, bias), q/k/v/out projections with biases and the MLP;
    the final LayerNorm and the head."""
    embedding = patch * patch * channels * width + width + (width if cls else 0) + (
        tokens + (1 if cls else 0)) * width
    block = 2 * 2 * width + 4 * (width * width + width) + (width * mlp + mlp) + (mlp * width + width)
    return embedding + depth * block + 2 * width + width * classes + classes


def count(model, shape):
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))
    return sum(leaf.size for leaf in jax.tree.leaves(variables))


def test_parameter_counts_match_the_architecture_and_vit_ti_is_5_7_million():
    # ViT-Ti/16 at 224×224 with 1,000 classes: 5,717,416 parameters (as published for DeiT-Ti)
    assert count(mmix_jax.get_model("vit_ti", num_classes=1000, patch_size=16),
                 (1, 224, 224, 3)) == 5_717_416
    assert by_hand_parameter_count(192, 12, 768, 16, 3, 196, 1000) == 5_717_416
    mini = mmix_jax.get_model("vit_mini", num_classes=10, patch_size=4, pool="gap")
    assert count(mini, (1, 28, 28, 1)) == by_hand_parameter_count(64, 4, 256, 4, 1, 49, 10,
                                                                  cls=False)


def tokens_and_blocks(model, variables, x):
    """The state at every mix point, unmixed (sown by the model)."""
    _, state = model.apply(variables, x, train=False, mutable=["intermediates"])
    return [state["intermediates"][f"mix_point_{i}"][0] for i in range(model.num_mix_points)]


@pytest.mark.parametrize("pool", ["token", "gap"])
def test_every_mix_point_mixes_the_token_sequence_like_by_hand(pool):
    model = ViT(**TINY, pool=pool)
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
    variables = model.init(jax.random.key(1), x, train=False)
    # the head starts at zero (logits all 0): draw it, so that the logits depend on the state
    head = variables["params"]["head"]
    variables["params"]["head"] = dict(head, kernel=jax.random.normal(jax.random.key(2),
                                                                      head["kernel"].shape))
    perm, lam = jnp.array([2, 3, 0, 1]), jnp.float32(0.3)
    states = tokens_and_blocks(model, variables, x)
    tokens = 4 + (pool == "token")
    assert model.num_mix_points == TINY["depth"] + 2
    assert all(s.shape == (4, tokens, 16) for s in states[1:])
    for k in range(model.num_mix_points):
        mixed = lam * states[k] + (1 - lam) * states[k][perm]
        want = model.apply(variables, mixed, k, train=False, method=ViT.forward_from)
        got = model.apply(variables, x, train=False, mix_layer=k, perm=perm, lam=lam)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f"k = {k}")
    assert not np.allclose(model.apply(variables, x, train=False, mix_layer=2, perm=perm, lam=lam),
                           model.apply(variables, x, train=False))


def vit_state(**kwargs):
    model = ViT(**{**TINY, **kwargs})
    images = jax.random.normal(jax.random.key(0), (8, 8, 8, 1))
    batch = {"image": images, "label": jnp.arange(8) % 3}
    return mmix_jax.create_train_state(model, optax.adamw(1e-3), jax.random.key(1), images), batch


def test_one_compile_for_every_k_and_stochastic_depth_draws_from_its_own_stream():
    state, batch = vit_state(stochastic_depth=0.5)
    assert state.apply_fn.__self__.rng_streams == ("dropout", "drop_path")
    spec = mmix_jax.MixSpec(num_classes=3, alpha=2.0, mix_layers=tuple(range(5)),
                            rng_streams=("dropout", "drop_path"))
    step = jax.jit(functools.partial(mmix_jax.mixup_step, config=spec))
    _, layers, _ = train_drawing_points(step, state, batch, [jax.random.key(i) for i in range(12)])
    assert layers == set(range(5)) and step._cache_size() == 1
    first, again = step(state, batch, jax.random.key(3)), step(state, batch, jax.random.key(3))
    assert jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), first, again))
    # The drop-path key alone changes the update: with the same k, λ and permutation (the same
    # step key) but the stream's key replaced, the gradient differs.
    draw = mmix_jax.sample_mix(jax.random.key(0), 8, alpha=2.0, mix_layers=(2,))
    keys = {"dropout": jax.random.key(5), "drop_path": jax.random.key(6)}
    grad = jax.jit(jax.grad(lambda p, rngs: mmix_jax.mixup_loss(
        p, state, batch["image"], batch["label"], draw, config=spec, rngs=rngs)[0]))
    same = grad(state.params, keys)
    other = grad(state.params, dict(keys, drop_path=jax.random.key(7)))
    np.testing.assert_array_equal(same["head"]["kernel"], grad(state.params, keys)["head"]["kernel"])
    # (the head starts at zero, so only its own gradient is non-zero at the first step)
    assert not np.allclose(same["head"]["kernel"], other["head"]["kernel"])
    with pytest.raises(Exception, match="drop_path"):  # the stream must be named
        mmix_jax.mixup_step(state, batch, jax.random.key(0),
                            config=mmix_jax.MixSpec(num_classes=3, mix_layers=(0, 1)))


def test_a_short_run_learns_two_patterns():
    """Horizontal vs vertical stripes (and a third class: checkers), Manifold Mixup at every
    point: the ViT learns them within 60 steps."""
    rows = jnp.arange(8)[:, None] % 2 * jnp.ones((1, 8))
    patterns = jnp.stack([rows, rows.T, (rows + rows.T) % 2])[..., None]
    labels = jnp.arange(24) % 3
    noise = 0.3 * jax.random.normal(jax.random.key(2), (24, 8, 8, 1))
    batch = {"image": patterns[labels] + noise, "label": labels}
    model = ViT(**TINY)
    state = mmix_jax.create_train_state(model, optax.adam(3e-3), jax.random.key(1), batch["image"])
    spec = mmix_jax.MixSpec(num_classes=3, alpha=2.0, mix_layers=tuple(range(5)), loss="soft_ce")
    step = jax.jit(functools.partial(mmix_jax.mixup_step, config=spec))
    for i in range(60):
        state, _ = step(state, batch, jax.random.key(i))
    accuracy = mmix_jax.eval_step(state, batch)["correct"] / 24
    assert float(accuracy) == 1.0
