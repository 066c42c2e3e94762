"""mmix_jax.nnx: mix points on an unmodified NNX model and the NNX step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from tiny_models import SmallCNN

import mmix_jax.nnx as mnnx
from mmix_jax.errors import MixPointError
from mmix_jax.mixup import MixSpec


def by_hand(model, x, k, perm, lam):
    """The forward pass written out, mixing after conv1 (k = 1) or the first block (k = 2)."""
    def mix(h):
        return lam * h + (1 - lam) * h[perm]
    h = mix(x) if k == 0 else x
    h = model.conv1(h)
    h = jax.nn.relu(mix(h) if k == 1 else h)
    h = model.blocks[0](h)
    h = jax.nn.relu(model.blocks[1](mix(h) if k == 2 else h))
    return model.head(jnp.mean(h, axis=(1, 2)))


def test_mixable_keeps_the_state_and_mixes_where_named():
    plain = SmallCNN(nnx.Rngs(0))
    state_before = jax.tree.map(np.asarray, nnx.state(plain))
    model = mnnx.mixable(SmallCNN(nnx.Rngs(0)), points=("conv1", "blocks/0"))
    same = jax.tree.map(lambda a, b: np.array_equal(a, np.asarray(b)), state_before,
                        nnx.state(model))
    assert all(jax.tree.leaves(same)) and model.num_mix_points == 3
    model.eval()
    plain.eval()
    x = jax.random.normal(jax.random.key(1), (6, 8, 8, 1))
    perm, lam = jnp.array([5, 4, 3, 2, 1, 0]), jnp.float32(0.25)
    np.testing.assert_allclose(model(x), plain(x), rtol=1e-6)  # no draw: the plain model
    for k in range(3):
        np.testing.assert_allclose(model(x, mix_layer=jnp.int32(k), perm=perm, lam=lam),
                                   by_hand(plain, x, k, perm, lam), rtol=1e-5, atol=1e-6)


def test_nnx_step_compiles_once_for_every_k_and_updates_in_place():
    model = mnnx.mixable(SmallCNN(nnx.Rngs(0)), points=("conv1", "blocks/0"))
    optimizer = nnx.Optimizer(model, optax.sgd(0.1, momentum=0.9), wrt=nnx.Param)
    spec = MixSpec(num_classes=10, alpha=2.0, mix_layers=(0, 1, 2))
    batch = {"image": jax.random.normal(jax.random.key(0), (8, 8, 8, 1)),
             "label": jnp.arange(8) % 10}
    before = np.asarray(model.head.kernel[...]).copy()
    layers = set()
    for step in range(12):
        metrics = mnnx.mixup_step(model, optimizer, batch, jax.random.key(step), config=spec)
        layers.add(int(metrics["mix_layer"]))
    assert layers == {0, 1, 2}
    assert mnnx.mixup_step._cache_size() == 1 if hasattr(mnnx.mixup_step, "_cache_size") else True
    assert not np.allclose(before, model.head.kernel[...])
    assert np.isfinite(float(metrics["loss"]))


@pytest.mark.parametrize("points, message", [
    (("nothing",), r"\['nothing'\] are not submodules of SmallCNN; its submodule paths are: "
                   r"\['blocks', 'blocks/0', 'blocks/1', 'conv1', 'head'\]"),
    ("conv1", "give a sequence of paths"),
])
def test_bad_points_are_named(points, message):
    with pytest.raises(MixPointError, match=message):
        mnnx.mixable(SmallCNN(nnx.Rngs(0)), points=points)


def test_a_point_called_twice_or_not_batch_major_is_refused():
    class Twice(nnx.Module):
        def __init__(self, rngs):
            self.dense = nnx.Linear(4, 4, rngs=rngs)

        def __call__(self, x):
            return self.dense(self.dense(x))

    class Scalar(nnx.Module):
        def __init__(self, rngs):
            self.dense = nnx.Linear(4, 4, rngs=rngs)
            self.norm = Norm()

        def __call__(self, x):
            return self.dense(x) / self.norm(x)

    class Norm(nnx.Module):
        def __call__(self, x):
            return jnp.linalg.norm(x)

    x, perm = jnp.ones((2, 4)), jnp.array([1, 0])
    with pytest.raises(MixPointError, match="'dense' was called 2 times"):
        mnnx.mixable(Twice(nnx.Rngs(0)), ("dense",))(x, mix_layer=1, perm=perm, lam=0.5)
    with pytest.raises(MixPointError, match=r"'norm' returns \(\), not a batch-major array"):
        mnnx.mixable(Scalar(nnx.Rngs(0)), ("norm",))(x, mix_layer=1, perm=perm, lam=0.5)




class DropoutNet(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.dense = nnx.Linear(6, 16, rngs=rngs)
        self.dropout = nnx.Dropout(0.5, rngs=rngs)
        self.head = nnx.Linear(16, 3, rngs=rngs)

    def __call__(self, x):
        return self.head(self.dropout(jax.nn.relu(self.dense(x))))


def test_identical_models_share_classes_and_dropout_comes_from_the_step_key():
    first = mnnx.mixable(SmallCNN(nnx.Rngs(0)), points=("conv1", "blocks/0"))
    second = mnnx.mixable(SmallCNN(nnx.Rngs(0)), points=("conv1", "blocks/0"))
    assert type(first) is type(second) and type(first.conv1) is type(second.conv1)

    spec = MixSpec(num_classes=3, alpha=1.0, mix_layers=(0, 1))
    batch = {"image": jax.random.normal(jax.random.key(0), (8, 6)), "label": jnp.arange(8) % 3}
    kernels = []
    for dropout_seed in (1, 2, 2):  # models whose own dropout streams differ
        model = mnnx.mixable(DropoutNet(nnx.Rngs(0, dropout=dropout_seed)), points=("dense",))
        optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
        key = jax.random.key(7 if len(kernels) < 2 else 8)
        mnnx.mixup_step(model, optimizer, batch, key, config=spec)
        kernels.append(np.asarray(model.dense.kernel[...]))
    np.testing.assert_array_equal(kernels[0], kernels[1])  # same step key: same update
    assert not np.array_equal(kernels[1], kernels[2])  # another key: other masks and draws


def test_dropout_on_the_default_stream_follows_the_step_key_too():
    """A model built with nnx.Rngs(0) draws its dropout masks from the "default" stream: the
    step reseeds it, so the stream's state before the step does not change the update, the
    step's key does."""
    spec = MixSpec(num_classes=3, alpha=1.0, mix_layers=(0, 1))
    batch = {"image": jax.random.normal(jax.random.key(0), (8, 6)), "label": jnp.arange(8) % 3}
    kernels = []
    for advance, key in ((0, 7), (3, 7), (0, 8)):
        model = mnnx.mixable(DropoutNet(nnx.Rngs(0)), points=("dense",))
        for _ in range(advance):  # the stream moved on, as after some other use
            model.dropout.rngs()
        optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
        mnnx.mixup_step(model, optimizer, batch, jax.random.key(key), config=spec)
        kernels.append(np.asarray(model.dense.kernel[...]))
    np.testing.assert_array_equal(kernels[0], kernels[1])
    assert not np.array_equal(kernels[0], kernels[2])


class Layer(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.linear = nnx.Linear(4, 4, rngs=rngs)

    def __call__(self, x):
        return self.linear(x)


class ScannedStack(nnx.Module):
    """The usual scan over layers: three layers' variables stacked by nnx.vmap, run by nnx.scan."""

    def __init__(self, rngs: nnx.Rngs):
        @nnx.split_rngs(splits=3)
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def make(rngs):
            return Layer(rngs)

        self.layers = make(rngs)

    def __call__(self, x):
        @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=nnx.Carry)
        def body(x, layer):
            return layer(x)

        return body(x, self.layers)


class RematLayer(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.layer = Layer(rngs)

    def __call__(self, x):
        return nnx.remat(lambda layer, x: layer(x))(self.layer, x)


def test_a_mix_point_inside_a_scan_over_layers_is_refused_but_remat_is_fine():
    x = jax.random.normal(jax.random.key(1), (4, 4))
    perm, lam = jnp.array([1, 2, 3, 0]), jnp.float32(0.3)
    stacked = mnnx.mixable(ScannedStack(nnx.Rngs(0)), points=("layers",))
    with pytest.raises(MixPointError, match="'layers' runs inside an NNX transform that slices "
                                            "its variables"):
        stacked(x, mix_layer=1, perm=perm, lam=lam)
    remat = mnnx.mixable(RematLayer(nnx.Rngs(0)), points=("layer",))  # a copy, same shapes
    plain = remat(x)
    np.testing.assert_allclose(remat(x, mix_layer=1, perm=perm, lam=lam),
                               0.3 * plain + 0.7 * plain[perm], rtol=1e-5, atol=1e-6)


def test_a_mixable_model_saves_and_restores_with_orbax_as_the_original_would(tmp_path):
    """mixable classes are made at run time (no pickling); the state is the original model's,
    so Orbax saves nnx.state(model) and restores it into a freshly wrapped model."""
    import orbax.checkpoint as ocp

    model = mnnx.mixable(DropoutNet(nnx.Rngs(0)), points=("dense",))
    model.eval()
    x = jax.random.normal(jax.random.key(1), (4, 6))
    expected = model(x)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "state", nnx.state(model))
    checkpointer.wait_until_finished()
    fresh = mnnx.mixable(DropoutNet(nnx.Rngs(5)), points=("dense",))  # other weights
    fresh.eval()
    assert not np.allclose(fresh(x), expected)
    nnx.update(fresh, checkpointer.restore(tmp_path / "state", nnx.state(fresh)))
    np.testing.assert_array_equal(fresh(x), expected)
