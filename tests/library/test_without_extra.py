"""The library without the `[train]` extra: every public step trains a model written here, in a
process where ml_collections, grain, TensorFlow, TFDS, clu, orbax, ... cannot be imported."""

import os

from blocked_imports import run_blocked

# A model written outside the project (native contract: maybe_mix at its points), one written
# without it (mixable), an NNX one, the semi-supervised step, and the shard_map step over 2
# devices. Each trains on two well-separated Gaussian classes and must fit them.
LIBRARY_USE = """
import functools
import jax, jax.numpy as jnp, numpy as np, optax
import flax.linen as nn
from flax import nnx
import mmix_jax, mmix_jax.nnx
from mmix_jax import parallel

class Native(nn.Module):
    @nn.compact
    def __call__(self, x, *, train, mix_layer=None, perm=None, lam=None):
        x = mmix_jax.maybe_mix(x, 0, mix_layer, perm, lam)
        x = nn.relu(nn.Dense(16)(x))
        x = mmix_jax.maybe_mix(x, 1, mix_layer, perm, lam)
        return nn.Dense(2)(x)

class Theirs(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        h = nn.relu(nn.Dense(16)(x))
        return nn.Dense(2)(nn.relu(nn.Dense(16, name="hidden")(h)))

rng = np.random.default_rng(0)
labels = np.arange(64) % 2
images = (rng.normal(size=(64, 4)) + 3.0 * labels[:, None]).astype(np.float32)
batch = {"image": jnp.asarray(images), "label": jnp.asarray(labels, jnp.int32)}
spec = mmix_jax.MixSpec(num_classes=2, alpha=1.0, mix_layers=(0, 1))

def accuracy(apply_fn, variables):
    logits = apply_fn(variables, batch["image"], train=False)
    return float(jnp.mean(jnp.argmax(logits, -1) == batch["label"]))

def fit(state, step, *args):
    for i in range(60):
        state, metrics = step(state, *args, jax.random.key(i))
    assert np.isfinite(float(metrics["loss"])), metrics
    return state

results = {}
for name, model in {"native": Native(),
                    "mixable": mmix_jax.mixable(Theirs(), points=("hidden",))}.items():
    state = mmix_jax.create_train_state(model, optax.adam(0.01), jax.random.key(1), batch["image"])
    state = fit(state, jax.jit(functools.partial(mmix_jax.mixup_step, config=spec)), batch)
    results[name] = accuracy(state.apply_fn, state.variables())

ssl = mmix_jax.SemiSupervisedSpec(num_classes=2, supervised_alpha=1.0, supervised_layers=(0, 1),
                                  unsupervised_alpha=1.0, unsupervised_layers=(0, 1),
                                  unsupervised_weight_max=1.0, rampup_steps=10)
state = mmix_jax.create_train_state(Native(), optax.adam(0.01), jax.random.key(1), batch["image"])
state = fit(state, jax.jit(functools.partial(mmix_jax.ssl_mixup_step, config=ssl)), batch,
            {"image": batch["image"]})
results["semi_supervised"] = accuracy(state.apply_fn, state.variables())

mesh = parallel.make_mesh()
state = mmix_jax.create_train_state(Native(), optax.adam(0.01), jax.random.key(1), batch["image"])
sharded = parallel.make_train_step(functools.partial(mmix_jax.mixup_step, config=spec), mesh)
state = fit(parallel.replicate(state, mesh), sharded, parallel.shard_batch(batch, mesh))
results["shard_map"] = accuracy(state.apply_fn, state.variables())

class TheirNnx(nnx.Module):
    def __init__(self, rngs):
        self.first, self.hidden = nnx.Linear(4, 16, rngs=rngs), nnx.Linear(16, 16, rngs=rngs)
        self.out = nnx.Linear(16, 2, rngs=rngs)
    def __call__(self, x):
        return self.out(jax.nn.relu(self.hidden(jax.nn.relu(self.first(x)))))

model = mmix_jax.nnx.mixable(TheirNnx(nnx.Rngs(0)), points=("hidden",))
optimizer = nnx.Optimizer(model, optax.adam(0.01), wrt=nnx.Param)
for i in range(60):
    mmix_jax.nnx.mixup_step(model, optimizer, batch, jax.random.key(i), config=spec)
model.eval()
results["nnx"] = float(jnp.mean(jnp.argmax(model(batch["image"]), -1) == batch["label"]))
print("ACCURACY", results, len(jax.devices()))
"""


def test_public_steps_train_without_the_harness_packages():
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2"
    env = dict(os.environ, XLA_FLAGS=flags.strip())
    result = run_blocked(LIBRARY_USE, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    assert lines["LOADED_BLOCKED"] == "[]"
    accuracies, devices = lines["ACCURACY"].rsplit(" ", 1)
    assert devices == "2"  # the shard_map step really ran over two devices
    for name, value in eval(accuracies).items():  # noqa: S307 - our own printed dict
        assert value >= 0.95, (name, value)  # two classes 3σ apart: all of them fit
