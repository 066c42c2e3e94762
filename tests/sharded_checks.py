"""Checks run in a subprocess with 8 (or N) CPU devices; see test_parallel.py.

usage: python tests/sharded_checks.py CHECK [ARGS]   (XLA_FLAGS sets the device count)
"""

import functools
import sys

import jax
import jax.numpy as jnp
import numpy as np
from tiny_models import tiny_plain, tiny_preact

from mmix_jax import parallel
from mmix_jax.beta import symmetric_beta
from mmix_jax.mixup import MixSpec
from mmix_jax.models import get_model
from mmix_jax.optim import paper_sgd, step_schedule
from mmix_jax.state import create_train_state
from mmix_jax.step import mixup_step

GLOBAL_BATCH = 32


def setup(bn_axis=None, classes=5, small=False):
    """A PreActResNet of one block per stage (BatchNorm: per device or, with `bn_axis`, across devices), or
    with `small` an MLP where the check is about placement, not the network."""
    model = (get_model("mlp", num_classes=classes, widths=(16, 16)) if small else
             tiny_preact(num_classes=classes, bn_axis=bn_axis))
    rng = np.random.default_rng(0)
    batch = {"image": rng.normal(size=(GLOBAL_BATCH, 8, 8, 3)).astype(np.float32),
             "label": (np.arange(GLOBAL_BATCH) % classes).astype(np.int32)}
    tx = paper_sgd(step_schedule(0.1, [], 0.1))
    state = create_train_state(model, tx, jax.random.key(0), batch["image"])
    return model, state, batch


def max_difference(a, b):
    return max(jax.tree.leaves(jax.tree.map(lambda x, y: float(jnp.abs(x - y).max()), a, b)))


def erm_equivalence():
    """Mixing off, cross-device BN: N devices == 1 device on the same global batch."""
    model, state, batch = setup(bn_axis=parallel.DATA_AXIS)
    single_model = tiny_preact(num_classes=5)
    spec = MixSpec(num_classes=5, mix_layers=())
    mesh = parallel.make_mesh()
    step = parallel.make_train_step(functools.partial(mixup_step, config=spec), mesh, donate=False)
    sharded_state = parallel.replicate(state, mesh)
    single_state = state.replace(apply_fn=single_model.apply)
    single = jax.jit(lambda s, b, r: mixup_step(s, b, r, config=spec))
    for i in range(3):
        sharded_state, m8 = step(sharded_state, parallel.shard_batch(batch, mesh),
                                 jax.random.key(i))
        single_state, m1 = single(single_state, batch, jax.random.key(i))
        np.testing.assert_allclose(m8["loss"], m1["loss"], rtol=1e-5)
    assert max_difference(sharded_state.params, single_state.params) < 1e-5
    assert max_difference(sharded_state.batch_stats, single_state.batch_stats) < 1e-5
    print("devices", jax.device_count(), "params max diff",
          max_difference(sharded_state.params, single_state.params))
    reduction_under_every_wrapper()


def reduction_under_every_wrapper():
    """The gradient is averaged explicitly: under shard_map with check_vma on and off and under
    pmap, N devices' update equals one device's on the global batch (ERM, an MLP)."""
    from jax.sharding import PartitionSpec as P

    _, state, batch = setup(small=True)
    spec = MixSpec(num_classes=5, mix_layers=())
    key = jax.random.key(3)
    expected = jax.jit(lambda s, b, r: mixup_step(s, b, r, config=spec))(state, batch, key)[0]
    mesh = parallel.make_mesh()
    devices = mesh.devices.size

    def per_device(s, b, r):
        return mixup_step(s, b, r, config=spec, axis_name=parallel.DATA_AXIS)

    results = {}
    for check_vma in (True, False):
        step = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(parallel.DATA_AXIS), P()),
                                     out_specs=(P(), P()), check_vma=check_vma))
        results[f"shard_map check_vma={check_vma}"] = step(
            parallel.replicate(state, mesh), parallel.shard_batch(batch, mesh), key)[0].params
    stacked = jax.tree.map(lambda v: v.reshape(devices, -1, *v.shape[1:]), batch)
    replicas = jax.pmap(per_device, axis_name=parallel.DATA_AXIS, in_axes=(None, 0, None))(
        state, stacked, key)[0].params
    assert max_difference(replicas, jax.tree.map(lambda v: v[:1], replicas)) == 0.0
    results["pmap"] = jax.tree.map(lambda v: v[0], replicas)
    update = max_difference(expected.params, state.params)
    assert update > 1e-3, update
    for name, params in results.items():
        difference = max_difference(params, expected.params)
        assert difference < 1e-6, (name, difference, update)
        print(name, "params max diff", difference)


def mixing_by_hand():
    """Mixing on, per-device BN: equals a by-hand computation on each shard with the shared
    k and λ and the per-shard permutation (the permutation key folded with the shard index)."""
    model, state, batch = setup()
    spec = MixSpec(num_classes=5, alpha=2.0, mix_layers=(0, 1, 2))
    mesh = parallel.make_mesh()
    devices = mesh.devices.size
    step = parallel.make_train_step(functools.partial(mixup_step, config=spec), mesh, donate=False)
    rng = jax.random.key(11)
    new_state, metrics = step(parallel.replicate(state, mesh), parallel.shard_batch(batch, mesh), rng)

    mix_rng, _ = jax.random.split(rng)
    layer_key, lam_key, perm_key = jax.random.split(mix_rng, 3)
    layer = jax.random.choice(layer_key, jnp.asarray(spec.mix_layers))
    lam = symmetric_beta(lam_key, spec.alpha)  # the step's sampler (KS-tested in test_beta)
    local = GLOBAL_BATCH // devices

    def loss_fn(params, x, y, perm):
        logits, updates = model.apply({"params": params, "batch_stats": state.batch_stats}, x,
                                      train=True, mix_layer=layer, perm=perm, lam=lam,
                                      mutable=["batch_stats"])
        one_hot = jax.nn.one_hot(y, 5)
        targets = lam * one_hot + (1 - lam) * one_hot[perm]
        p = jax.nn.softmax(logits)
        loss = -jnp.mean(targets * jnp.log(p) + (1 - targets) * jnp.log(1 - p))
        return loss, updates["batch_stats"]

    by_hand = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))  # one compile for every shard
    grads, stats, losses = [], [], []
    for d in range(devices):
        perm = jax.random.permutation(jax.random.fold_in(perm_key, d), local)
        shard = slice(d * local, (d + 1) * local)
        (loss, new_stats), g = by_hand(state.params, batch["image"][shard],
                                       batch["label"][shard], perm)
        grads.append(g), stats.append(new_stats), losses.append(loss)
    mean = lambda trees: jax.tree.map(lambda *xs: sum(xs) / len(xs), *trees)  # noqa: E731
    updates, _ = state.tx.update(mean(grads), state.opt_state, state.params)
    expected_params = jax.tree.map(lambda p, u: p + u, state.params, updates)
    assert float(metrics["mix_layer"]) == float(layer)
    np.testing.assert_allclose(metrics["lam"], lam, rtol=1e-6)
    np.testing.assert_allclose(metrics["loss"], np.mean(losses), rtol=1e-4)
    # BatchNorm over 4 examples per shard amplifies float32 rounding to ~1e-5; a wrong
    # permutation, k, λ or gradient average changes the update itself (checked to be large).
    update_size = max_difference(expected_params, state.params)
    assert update_size > 1e-2, update_size
    assert max_difference(new_state.params, expected_params) < 1e-4, \
        max_difference(new_state.params, expected_params)
    assert max_difference(new_state.batch_stats, mean(stats)) < 1e-5
    print("devices", devices, "mix_layer", int(layer), "lam", float(lam), "params max diff",
          max_difference(new_state.params, expected_params), "update size", update_size)


def save_for_restore(directory):
    """Trains two sharded steps on all devices and saves; writes the params as .npz too."""
    import ml_collections

    from mmix_jax.harness.checkpoint import Checkpoints, CheckpointSettings
    _, state, batch = setup(small=True)
    mesh = parallel.make_mesh()
    step = parallel.make_train_step(functools.partial(mixup_step, config=MixSpec(num_classes=5)), mesh)
    state = parallel.replicate(state, mesh)
    for i in range(2):
        state, _ = step(state, parallel.shard_batch(batch, mesh), jax.random.key(i))
    checkpoints = Checkpoints(directory, CheckpointSettings(best_metric=None))
    config = ml_collections.ConfigDict({"model": {"name": "mlp"}}).to_dict()
    checkpoints.save(2, state, config)
    checkpoints.wait()
    flat = {jax.tree_util.keystr(k): np.asarray(v)
            for k, v in jax.tree_util.tree_flatten_with_path(state.params)[0]}
    np.savez(f"{directory}/expected_params.npz", **flat)
    print("saved on", jax.device_count(), "devices")


def restore_elsewhere(directory):
    """Restores the checkpoint onto this process's devices and compares with the .npz."""
    from mmix_jax.harness.checkpoint import Checkpoints, CheckpointSettings, abstract_like
    _, state, _ = setup(small=True)
    mesh = parallel.make_mesh()
    checkpoints = Checkpoints(directory, CheckpointSettings(best_metric=None))
    restored = checkpoints.restore_latest(abstract_like(state, parallel.replicated(mesh)),
                                          {"model": {"name": "mlp"}})
    assert restored is not None and int(restored.step) == 2
    expected = np.load(f"{directory}/expected_params.npz")
    for path, leaf in jax.tree_util.tree_flatten_with_path(restored.params)[0]:
        assert len(leaf.sharding.device_set) == jax.device_count()
        np.testing.assert_array_equal(np.asarray(leaf), expected[jax.tree_util.keystr(path)])
    step = parallel.make_train_step(functools.partial(mixup_step, config=MixSpec(num_classes=5)), mesh)
    _, batch = setup(small=True)[1:]
    restored, metrics = step(restored, parallel.shard_batch(batch, mesh), jax.random.key(5))
    assert np.isfinite(float(metrics["loss"]))
    print("restored on", jax.device_count(), "devices and trained on")


def wrapped_equals_native():
    """mixup_step on N devices: a plain Linen PreActResNet18 wrapped with `mixable` trains
    exactly as our native one from the same variables and keys."""
    from mmix_jax.wrap import mixable

    _, state, batch = setup()
    wrapped = mixable(tiny_plain(num_classes=5),
                      points=("stages_0", "stages_1", "stages_2"))
    mesh = parallel.make_mesh()
    step = parallel.make_train_step(functools.partial(mixup_step, config=MixSpec(num_classes=5)),
                                    mesh, donate=False)
    native_state = parallel.replicate(state, mesh)
    wrapped_state = parallel.replicate(state.replace(apply_fn=wrapped.apply), mesh)
    for i in range(3):
        sharded = parallel.shard_batch(batch, mesh)
        native_state, native_metrics = step(native_state, sharded, jax.random.key(i))
        wrapped_state, wrapped_metrics = step(wrapped_state, sharded, jax.random.key(i))
        assert float(native_metrics["mix_layer"]) == float(wrapped_metrics["mix_layer"])
    assert max_difference(native_state.params, wrapped_state.params) < 1e-6
    print("devices", jax.device_count(), "wrapped == native, params max diff",
          max_difference(native_state.params, wrapped_state.params))


def ssl_by_hand(targets="self", sharded=True, target_gradient="stop"):
    """ssl_mixup_step on all devices (MLP: no BatchNorm, no dropout, so every pass is a plain
    function) equals a by-hand computation per shard: its own permutations (keys folded with
    the shard index), targets from the step's starting weights (the same network, or the
    teacher, which starts as a copy) held constant (or, `target_gradient` "through",
    differentiated as a function of the weights), the mean of the shard gradients, and for
    the mean teacher its EMA update. Works with any device count; `sharded=False` checks the
    plain step (no shard_map, one batch)."""
    import functools

    from mmix_jax.semi_supervised import SemiSupervisedSpec, draws, paired_ssl_step, ssl_mixup_step
    from mmix_jax.state import with_teacher

    classes, local_l, local_u = 5, 4, 6
    model = get_model("mlp", num_classes=classes, widths=(16, 16))
    mesh = parallel.make_mesh()
    devices = mesh.devices.size if sharded else 1
    data = np.random.default_rng(1)
    labeled = {"image": data.normal(size=(local_l * devices, 3, 3, 2)).astype(np.float32),
               "label": (np.arange(local_l * devices) % classes).astype(np.int32)}
    unlabeled = {"image": data.normal(size=(local_u * devices, 3, 3, 2)).astype(np.float32)}
    state = create_train_state(model, paper_sgd(step_schedule(0.1, [], 0.1)), jax.random.key(0),
                               labeled["image"])
    spec = SemiSupervisedSpec(num_classes=classes, rampup_steps=10, targets=targets,
                              unsupervised_layers=(0, 1), unsupervised_weight_max=30.0,
                              target_gradient=target_gradient)
    if spec.uses_teacher:
        state = with_teacher(state)
    state = state.replace(step=jnp.asarray(4, jnp.int32))  # w = 30·exp(−5·0.36)
    rng = jax.random.key(5)
    if sharded:
        step = parallel.make_train_step(paired_ssl_step(spec), mesh, donate=False)
        new_state, metrics = step(parallel.replicate(state, mesh), parallel.shard_batch(
            {"labeled": labeled, "unlabeled": unlabeled}, mesh), rng)
    else:
        new_state, metrics = jax.jit(functools.partial(ssl_mixup_step, config=spec))(
            state, labeled, unlabeled, rng)

    weight = 30.0 * np.exp(-5 * 0.6 ** 2)
    grads, sup_losses, unsup_losses = [], [], []
    def by_hand(params, x, y, u, shard):
        sup, unsup, _ = draws(rng, spec, local_l, local_u,
                              shard_index=shard if sharded else None)
        def mixed_target_of(weights):
            target_logits = model.apply({"params": weights}, u, train=True)
            return unsup.lam * target_logits + (1 - unsup.lam) * target_logits[unsup.perm]

        held = mixed_target_of(params)  # held constant below unless "through"

        def loss_fn(params):
            logits = model.apply({"params": params}, x, train=True, mix_layer=sup.layer,
                                 perm=sup.perm, lam=sup.lam)
            log_p = jax.nn.log_softmax(logits)
            sup_loss = -(sup.lam * jnp.mean(jnp.sum(y * log_p, -1))
                         + (1 - sup.lam) * jnp.mean(jnp.sum(y[sup.perm] * log_p, -1)))
            out = model.apply({"params": params}, u, train=True, mix_layer=unsup.layer,
                              perm=unsup.perm, lam=unsup.lam)
            target = mixed_target_of(params) if target_gradient == "through" else held
            if targets == "mean_teacher":
                out, target = jax.nn.softmax(out), jax.nn.softmax(target)
            unsup_loss = jnp.mean((out - target) ** 2)
            return sup_loss + weight * unsup_loss, (sup_loss, unsup_loss)

        return jax.value_and_grad(loss_fn, has_aux=True)(params)

    by_hand = jax.jit(by_hand)  # one compile for every shard
    for d in range(devices):
        x = labeled["image"][d * local_l:(d + 1) * local_l]
        y = jax.nn.one_hot(labeled["label"][d * local_l:(d + 1) * local_l], classes)
        u = unlabeled["image"][d * local_u:(d + 1) * local_u]
        (_, (sup_loss, unsup_loss)), g = by_hand(state.params, x, y, u, d)
        grads.append(g), sup_losses.append(sup_loss), unsup_losses.append(unsup_loss)
    mean = lambda trees: jax.tree.map(lambda *xs: sum(xs) / len(xs), *trees)  # noqa: E731
    updates, _ = state.tx.update(mean(grads), state.opt_state, state.params)
    expected = jax.tree.map(lambda p, u: p + u, state.params, updates)
    np.testing.assert_allclose(metrics["unsupervised_weight"], weight, rtol=1e-6)
    np.testing.assert_allclose(metrics["supervised_loss"], np.mean(sup_losses), rtol=1e-5)
    np.testing.assert_allclose(metrics["unsupervised_loss"], np.mean(unsup_losses), rtol=1e-5)
    update_size = max_difference(expected, state.params)
    assert update_size > 1e-3, update_size
    assert max_difference(new_state.params, expected) < 1e-6, max_difference(new_state.params,
                                                                              expected)
    if spec.uses_teacher:  # step 4 → 5: decay min(1 − 1/6, 0.999)
        decay = 1 - 1 / 6
        teacher = jax.tree.map(lambda t, p: decay * t + (1 - decay) * p, state.params, expected)
        assert max_difference(new_state.teacher["params"], teacher) < 1e-6
    print("devices", devices, "targets", targets, "params max diff",
          max_difference(new_state.params, expected), "update size", update_size)


def supervised_and_semi_supervised_by_hand():
    """mixing_by_hand and ssl_by_hand for both target kinds, in one process."""
    mixing_by_hand()
    for targets in ("self", "mean_teacher"):
        ssl_by_hand(targets)




def collections_over_devices():
    """CountingNet under shard_map: its counter (an int collection) advances once per step and
    its BatchNorm statistics are the mean over devices of each device's own update."""
    from tiny_models import CountingNet

    mesh = parallel.make_mesh()
    devices = len(jax.devices())
    model = CountingNet(num_classes=5)
    rng = np.random.default_rng(0)
    batch = {"image": rng.normal(size=(GLOBAL_BATCH, 4, 4, 1)).astype(np.float32),
             "label": (np.arange(GLOBAL_BATCH) % 5).astype(np.int32)}
    state = create_train_state(model, paper_sgd(step_schedule(0.1, [], 0.1)), jax.random.key(0),
                               batch["image"])
    spec = MixSpec(num_classes=5, alpha=0.0, mix_layers=())
    step = parallel.make_train_step(functools.partial(mixup_step, config=spec), mesh, donate=False)
    new, metrics = step(parallel.replicate(state, mesh), parallel.shard_batch(batch, mesh),
                        jax.random.key(1))
    new, metrics = step(new, parallel.shard_batch(batch, mesh), jax.random.key(2))
    assert int(new.model_state["counters"]["calls"]) == 2, new.model_state["counters"]
    # one device's pass over its share, by hand, averaged
    shares = np.split(batch["image"], devices)
    means = []
    for share in shares:
        _, updates = model.apply(state.variables(), share, train=True,
                                 mutable=["batch_stats", "counters"])
        means.append(updates["batch_stats"]["BatchNorm_0"]["mean"])
    once = step(parallel.replicate(state, mesh), parallel.shard_batch(batch, mesh),
                jax.random.key(1))[0]
    assert max_difference(once.batch_stats["BatchNorm_0"]["mean"], np.mean(means, axis=0)) < 1e-6
    assert float(metrics["sown_loss"]) > 0
    print("collections over devices: ok")


if __name__ == "__main__":
    globals()[sys.argv[1]](*sys.argv[2:])
