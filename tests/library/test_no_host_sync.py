"""No host-synchronising control flow in any training step, and the select equals the old cond.

On XLA:GPU a `while` with an unknown trip count and a `conditional` copy their predicate to the
host and block the launch stream; TPUs and GPUs see the same StableHLO, so each step is exported
for CUDA and for TPU (`jax.export`, no device needed) and its module searched for `while`,
`case` and `if`. The old mixing (a `lax.cond` per point, `jax.random.beta`) is in
legacy_mixing.py beside this file: these tests fail with it, and the new mixing must equal it bit for bit
for a fixed (k, λ, perm).
"""

import functools
import re

import jax
import jax.numpy as jnp
import legacy_mixing as legacy
import numpy as np
import optax
import pytest
from flax import nnx
from tiny_models import tiny_plain, tiny_preact

import mmix_jax.nnx as mnnx
from mmix_jax import mixup as mixup_module
from mmix_jax import parallel
from mmix_jax.mixup import MixDraw, MixPoint, MixSpec, maybe_mix
from mmix_jax.semi_supervised import SemiSupervisedSpec, paired_ssl_step, ssl_mixup_step
from mmix_jax.state import create_train_state, with_teacher
from mmix_jax.step import mixup_loss, mixup_step
from mmix_jax.wrap import mixable

CLASSES = 4


@pytest.fixture
def on_an_accelerator(monkeypatch):
    """Steps traced as on a GPU or TPU host, where mixing="auto" selects (on XLA:CPU it keeps a
    lax.cond, which runs there without a host round trip)."""
    monkeypatch.setattr(mixup_module, "_backend", lambda: "gpu")
HOST_SYNC_OPS = ("while", "case", "if")
METHODS = {"erm": (0.0, ()), "input": (1.0, (0,)), "manifold": (2.0, (0, 1, 2))}


PLATFORMS = ("cuda", "tpu")
NONE = {platform: {"while": 0, "case": 0, "if": 0} for platform in PLATFORMS}


def control_flow(function, *args):
    """Per platform, the counts of `while`, `case` and `if` in the StableHLO of jitted
    `function` lowered for CUDA and for TPU (traced once; `jax.export` lowers the same way)."""
    traced = function.trace(*args)
    counts = {}
    for platform in PLATFORMS:
        module = traced.lower(lowering_platforms=(platform,)).as_text()
        counts[platform] = {op: len(re.findall(rf"stablehlo\.{op}\b", module))
                            for op in HOST_SYNC_OPS}
    return counts


@pytest.fixture(scope="module")
def setup():
    x = jax.random.normal(jax.random.key(0), (8, 8, 8, 3))
    batch = {"image": x, "label": jnp.arange(8, dtype=jnp.int32) % CLASSES}
    tx = optax.sgd(0.1, momentum=0.9)
    native = tiny_preact(num_classes=CLASSES)
    wrapped = mixable(tiny_plain(num_classes=CLASSES),
                      points=("stages_0", "stages_1", "stages_2"))
    state = create_train_state(native, tx, jax.random.key(1), x)
    # The wrapped plain model takes our model's variables exactly (tests/library/test_wrap.py).
    states = {"native": state, "wrapped": state.replace(apply_fn=wrapped.apply)}
    mesh = parallel.make_mesh(jax.devices()[:1])
    return states, batch, mesh


def jitted_and_sharded(spec, step, state, batch, mesh):
    """(name, function, arguments) for the jitted step and its jit(shard_map) over `mesh`."""
    yield "jit", jax.jit(functools.partial(step, config=spec)), (state, batch)
    sharded = parallel.make_train_step(functools.partial(step, config=spec), mesh, donate=False)
    yield "shard_map", sharded, (
        parallel.replicate(state, mesh), parallel.shard_batch(batch, mesh))


def test_supervised_and_mixable_steps_have_no_host_synchronising_control_flow(
        setup, on_an_accelerator):
    states, batch, mesh = setup
    found = {}
    for method, (alpha, layers) in {**METHODS, "mixable": METHODS["manifold"]}.items():
        spec = MixSpec(num_classes=CLASSES, alpha=alpha, mix_layers=layers)
        state = states["wrapped" if method == "mixable" else "native"]
        for form, step, args in jitted_and_sharded(spec, mixup_step, state, batch, mesh):
            found[f"{method} {form}"] = control_flow(step, *args, jax.random.key(2))
    assert len(found) == 8
    assert all(counts == NONE for counts in found.values()), found


def test_semi_supervised_steps_have_no_host_synchronising_control_flow(setup, on_an_accelerator):
    states, batch, mesh = setup
    unlabeled = {"image": batch["image"][::-1]}
    found = {}
    for targets in ("self", "mean_teacher"):
        spec = SemiSupervisedSpec(num_classes=CLASSES, rampup_steps=10, targets=targets)
        state = states["native"]
        state = with_teacher(state) if targets == "mean_teacher" else state
        step = jax.jit(functools.partial(ssl_mixup_step, config=spec))
        found[f"{targets} jit"] = control_flow(step, state, batch, unlabeled, jax.random.key(3))
        sharded = parallel.make_train_step(paired_ssl_step(spec), mesh, donate=False)
        both = parallel.shard_batch({"labeled": batch, "unlabeled": unlabeled}, mesh)
        found[f"{targets} shard_map"] = control_flow(
            sharded, parallel.replicate(state, mesh), both, jax.random.key(3))
    assert len(found) == 4
    assert all(counts == NONE for counts in found.values()), found


class TinyNnxNet(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.conv = nnx.Conv(3, 8, (3, 3), rngs=rngs)
        self.norm = nnx.BatchNorm(8, rngs=rngs)
        self.head = nnx.Linear(8, CLASSES, rngs=rngs)

    def __call__(self, x):
        h = jax.nn.relu(self.norm(self.conv(x)))
        return self.head(jnp.mean(h, axis=(1, 2)))


def test_nnx_step_has_no_host_synchronising_control_flow(setup, on_an_accelerator):
    _, batch, _ = setup
    model = mnnx.mixable(TinyNnxNet(nnx.Rngs(0)), points=("conv", "norm"))
    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    graphdef, state = nnx.split((model, optimizer))
    spec = MixSpec(num_classes=CLASSES, mix_layers=(0, 1, 2))

    @jax.jit
    def pure_step(state, batch, rng):
        model, optimizer = nnx.merge(graphdef, state)
        metrics = mnnx.mixup_step(model, optimizer, batch, rng, config=spec)
        return nnx.state((model, optimizer)), metrics

    assert control_flow(pure_step, state, batch, jax.random.key(4)) == NONE


def test_the_old_mixing_is_caught_by_the_export_check(setup):
    """The check is not vacuous: the old cond + jax.random.beta step has both op kinds."""
    states, batch, _ = setup
    spec = MixSpec(num_classes=CLASSES, mix_layers=(0, 1, 2))
    with legacy.legacy_mixing():
        step = jax.jit(functools.partial(mixup_step, config=spec))
        counts = control_flow(step, states["native"], batch, jax.random.key(2))
    assert all(counts[platform]["while"] >= 2 and counts[platform]["case"] >= 4
               for platform in PLATFORMS), counts


def test_on_the_cpu_backend_auto_branches_and_select_is_forced_by_the_spec(setup):
    """XLA:CPU keeps one lax.cond per eligible point (no while: λ's sampler is loop-free on
    every backend); mixing="select" removes them there too."""
    states, batch, _ = setup
    counts = {}
    for mixing in ("auto", "select"):
        spec = MixSpec(num_classes=CLASSES, mix_layers=(0, 1, 2), mixing=mixing)
        step = jax.jit(functools.partial(mixup_step, config=spec))
        counts[mixing] = control_flow(step, states["native"], batch, jax.random.key(2))["cuda"]
    assert counts["auto"]["case"] >= 3 and counts["auto"]["while"] == 0, counts
    assert counts["select"] == NONE["cuda"], counts


def forward_and_gradient(state, images, labels, layer, lam, perm, eligible):
    draw = MixDraw(layer, lam, perm)
    spec = MixSpec(num_classes=CLASSES, mix_layers=eligible, mixing="select")
    grad_fn = jax.value_and_grad(mixup_loss, has_aux=True)
    (loss, (logits, stats, _)), grads = grad_fn(state.params, state, images, labels, draw,
                                             config=spec)
    return loss, logits, stats, grads


@pytest.mark.parametrize("model, eligible", [("native", (0, 1, 2, 3)), ("wrapped", (1,))])
def test_select_equals_the_old_cond_bit_for_bit_at_every_point(setup, model, eligible):
    """Loss, logits, BatchNorm statistics and gradients for every k (and a single point)."""
    states, batch, _ = setup
    state = states[model]
    perm, lam = jnp.array([3, 7, 0, 5, 1, 6, 2, 4], jnp.int32), jnp.float32(0.3)
    args = (state, batch["image"], batch["label"])
    new = jax.jit(functools.partial(forward_and_gradient, eligible=eligible))
    with legacy.legacy_mixing():
        old = jax.jit(functools.partial(forward_and_gradient, eligible=eligible))
        expected = [old(*args, jnp.int32(k), lam, perm) for k in eligible]
    for k, want in zip(eligible, expected):
        got = new(*args, jnp.int32(k), lam, perm)
        equal = jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)), got, want)
        assert all(jax.tree.leaves(equal)), (model, eligible, k)


def test_a_point_outside_the_eligible_set_is_never_mixed():
    h = jax.random.normal(jax.random.key(0), (6, 3))
    perm, lam = jnp.array([5, 4, 3, 2, 1, 0]), jnp.float32(0.25)
    drawn = MixPoint(jnp.int32(2), (1, 2), select=True)
    assert maybe_mix(h, 0, drawn, perm, lam) is h  # not eligible: no work at all
    np.testing.assert_array_equal(maybe_mix(h, 1, drawn, perm, lam), h)  # eligible, not drawn
    np.testing.assert_allclose(maybe_mix(h, 2, drawn, perm, lam), 0.25 * h + 0.75 * h[perm],
                               rtol=1e-6, atol=1e-6)
    # A bare traced k selects at every point: the same values.
    np.testing.assert_allclose(jax.jit(lambda k: maybe_mix(h, 2, k, perm, lam))(jnp.int32(2)),
                               0.25 * h + 0.75 * h[perm], rtol=1e-6, atol=1e-6)
