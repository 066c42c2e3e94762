"""Bad input is refused with a message that names it: spec fields, batches, integer states at
a mix point, a batch of one, logits that do not match num_classes, partial mixing arguments."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import mmix_jax
import mmix_jax.nnx as mnnx
from mmix_jax.errors import MixPointError


class TinyNet(nn.Module):
    classes: int = 3

    @nn.compact
    def __call__(self, x, *, train, mix_layer=None, perm=None, lam=None):
        x = mmix_jax.maybe_mix(x, 0, mix_layer, perm, lam)
        x = nn.relu(nn.Dense(8)(x.reshape(x.shape[0], -1).astype(jnp.float32)))
        x = mmix_jax.maybe_mix(x, 1, mix_layer, perm, lam)
        return nn.Dense(self.classes)(x)


def state_of(model, images):
    return mmix_jax.create_train_state(model, optax.sgd(0.1), jax.random.key(0), images)


def step(spec):
    return jax.jit(functools.partial(mmix_jax.mixup_step, config=spec))


@pytest.mark.parametrize("field, value, message", [
    ("alpha", float("inf"), r"MixSpec.alpha = inf: must be a finite number >= 0"),
    ("alpha", -1.0, r"MixSpec.alpha = -1.0: must be a finite number >= 0"),
    ("num_classes", 4.5, r"MixSpec.num_classes = 4.5: must be an integer >= 2"),
    ("num_classes", 1, r"MixSpec.num_classes = 1: must be an integer >= 2"),
    ("mix_layers", "01", r"MixSpec.mix_layers = '01': must be a sequence of mix points"),
    ("mix_layers", (0, 0), r"MixSpec.mix_layers = \(0, 0\): must be distinct"),
    ("mix_layers", (0, -1), r"MixSpec.mix_layers = -1: must be an integer >= 0"),
])
def test_mix_spec_fields_are_validated_by_name(field, value, message):
    with pytest.raises(ValueError, match=message):
        mmix_jax.MixSpec(**{"num_classes": 3, field: value})


def test_mix_spec_coerces_numbers_to_static_python_values():
    spec = mmix_jax.MixSpec(num_classes=np.int64(3), alpha=jnp.float32(2), mix_layers=[0, 1])
    assert spec == mmix_jax.MixSpec(num_classes=3, alpha=2.0, mix_layers=(0, 1))
    assert type(spec.alpha) is float and type(spec.num_classes) is int
    hash(spec)  # a jit static argument
    with pytest.raises(ValueError, match="MixSpec.alpha = .*given as a Python number"):
        jax.jit(lambda a: mmix_jax.MixSpec(num_classes=3, alpha=a))(2.0)


@pytest.mark.parametrize("field, value", [("rampup_steps", -1), ("ema_decay", 1.0),
                                          ("unsupervised_alpha", float("nan")),
                                          ("supervised_layers", "0")])
def test_semi_supervised_spec_fields_are_validated_by_name(field, value):
    with pytest.raises(ValueError, match=f"SemiSupervisedSpec.{field} = "):
        mmix_jax.SemiSupervisedSpec(**{"num_classes": 3, "rampup_steps": 10, field: value})


def test_integer_images_at_a_mix_point_are_refused_naming_the_dtype():
    images = jnp.full((4, 2, 2, 1), 182, jnp.uint8)
    batch = {"image": images, "label": jnp.array([0, 1, 2, 0])}
    spec = mmix_jax.MixSpec(num_classes=3, alpha=1.0, mix_layers=(0,))
    with pytest.raises(MixPointError, match=r"mix point 0 holds uint8 values.*astype"):
        step(spec)(state_of(TinyNet(), images), batch, jax.random.key(1))
    erm = mmix_jax.MixSpec(num_classes=3, mix_layers=())  # not mixed: integers are fine
    step(erm)(state_of(TinyNet(), images), batch, jax.random.key(1))


def test_a_batch_of_one_is_refused_when_mixing_and_trains_without():
    batch = {"image": jnp.ones((1, 4)), "label": jnp.array([2])}
    state = state_of(TinyNet(), batch["image"])
    with pytest.raises(ValueError, match="a batch of 1 cannot be mixed"):
        step(mmix_jax.MixSpec(num_classes=3, alpha=1.0, mix_layers=(0, 1)))(
            state, batch, jax.random.key(1))
    step(mmix_jax.MixSpec(num_classes=3, mix_layers=()))(state, batch, jax.random.key(1))


def test_logits_that_do_not_match_num_classes_name_it():
    batch = {"image": jnp.ones((4, 4)), "label": jnp.array([0, 1, 2, 3])}
    state = state_of(TinyNet(classes=10), batch["image"])
    with pytest.raises(ValueError, match=r"logits of shape \(4, 10\).*MixSpec.num_classes = 4"):
        step(mmix_jax.MixSpec(num_classes=4, alpha=1.0, mix_layers=(0,)))(
            state, batch, jax.random.key(1))


@pytest.mark.parametrize("batch, message", [
    ({"image": jnp.ones((4, 4))}, r"the batch has no \['label'\]"),
    ({"image": jnp.ones((4, 4)), "label": jnp.ones((4,))}, r"batch\['label'\] is float32"),
    ({"image": jnp.ones((4, 4)), "label": jnp.ones((4, 3), jnp.int32)}, r"integer class indices"),
    ({"image": jnp.ones((8, 4)), "label": jnp.zeros(4, jnp.int32)}, r"same batch size"),
])
def test_bad_batches_are_named(batch, message):
    state = state_of(TinyNet(), jnp.ones((4, 4)))
    with pytest.raises(ValueError, match=message):
        step(mmix_jax.MixSpec(num_classes=3, alpha=1.0, mix_layers=(0,)))(
            state, batch, jax.random.key(1))


def test_a_mix_layer_without_perm_and_lam_gets_the_mixing_message():
    model = mmix_jax.get_model("mlp", num_classes=3, widths=(8,))
    x = jnp.ones((4, 4))
    variables = model.init(jax.random.key(0), x, train=False)
    with pytest.raises(ValueError, match="mix_layer was given without perm and lam"):
        model.apply(variables, x, train=False, mix_layer=1)
    with pytest.raises(ValueError, match=r"perm has shape \(3,\) but the batch has 4"):
        model.apply(variables, x, train=False, mix_layer=1, perm=jnp.arange(3), lam=0.5)


def test_the_nnx_step_checks_labels_and_batch_sizes_like_the_linen_step():
    class Net(nnx.Module):
        def __init__(self, rngs):
            self.hidden, self.out = nnx.Linear(4, 8, rngs=rngs), nnx.Linear(8, 3, rngs=rngs)

        def __call__(self, x):
            return self.out(jax.nn.relu(self.hidden(x)))

    model = mnnx.mixable(Net(nnx.Rngs(0)), points=("hidden",))
    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    spec = mmix_jax.MixSpec(num_classes=3, alpha=1.0, mix_layers=(0, 1))
    for batch, message in (({"image": jnp.ones((16, 4)), "label": jnp.zeros(8, jnp.int32)},
                            "same batch size"),
                           ({"image": jnp.ones((4, 4)), "label": jnp.ones(4)},
                            r"batch\['label'\] is float32")):
        with pytest.raises(ValueError, match=message):
            mnnx.mixup_step(model, optimizer, batch, jax.random.key(1), config=spec)


def test_labels_out_of_range_are_caught_by_the_opt_in_checkify_path():
    from jax.experimental import checkify

    batch = {"image": jnp.ones((4, 4)), "label": jnp.array([0, 1, 3, -1])}
    state = state_of(TinyNet(), batch["image"])
    checked = mmix_jax.MixSpec(num_classes=3, alpha=1.0, mix_layers=(0,), check_labels=True)
    error, _ = jax.jit(checkify.checkify(functools.partial(mmix_jax.mixup_step, config=checked)))(
        state, batch, jax.random.key(1))
    with pytest.raises(checkify.JaxRuntimeError, match=r"labels outside \[0, 3\).*min -1, max 3"):
        error.throw()
    good = dict(batch, label=jnp.array([0, 1, 2, 0]))
    error, _ = jax.jit(checkify.checkify(functools.partial(mmix_jax.mixup_step, config=checked)))(
        state, good, jax.random.key(1))
    error.throw()  # nothing to report
