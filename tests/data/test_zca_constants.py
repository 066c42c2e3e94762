"""The ZCA transform reaches compiled steps as an argument (not a literal in the program), and the
final evaluation of a whitened run sees the same inputs as training and in-loop evaluation."""

import functools
import re

import jax
import numpy as np
import optax

from mmix_jax import parallel
from mmix_jax.data.datasets import (
    ArrayDataset,
    DataSpec,
    Splits,
    eval_preprocess,
    preprocess_constants,
    train_preprocess,
)
from mmix_jax.data.zca import fit_zca
from mmix_jax.evaluation.evaluate import EvalSettings, InputSpace, evaluate_dataset, full_evaluation
from mmix_jax.mixup import MixSpec
from mmix_jax.models import get_model
from mmix_jax.state import create_train_state
from mmix_jax.step import mixup_step

MEAN, STD = (0.5, 0.4, 0.45), (0.25, 0.2, 0.3)


def whitened_splits():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 4, 4, 3), dtype=np.uint8)
    labels = (np.arange(64) % 3).astype(np.int32)
    data = ArrayDataset(images, labels)
    return Splits(data, ArrayDataset(images[:20], labels[:20]), 3, MEAN, STD,
                  zca=fit_zca(images, MEAN, STD))


def matrix_literals(text):
    """Constants of the 48×48 ZCA matrix's type written into the program."""
    return re.findall(r"stablehlo\.constant dense<[^>]{20,}> : tensor<48x48xf32>", text)


def test_the_zca_matrix_is_an_argument_of_the_compiled_step_not_a_literal():
    splits = whitened_splits()
    mesh = parallel.make_mesh(jax.devices()[:1])
    model = get_model("mlp", num_classes=3, widths=(8,))
    state = parallel.replicate(create_train_state(model, optax.sgd(0.1), jax.random.key(0),
                                                  np.zeros((8, 4, 4, 3), np.float32)), mesh)
    batch = parallel.shard_batch({"image": splits.train.images[:8],
                                  "label": splits.train.labels[:8]}, mesh)
    preprocess = train_preprocess(DataSpec(name="npz"), splits)
    spec = MixSpec(num_classes=3, mix_layers=(0, 1))  # the MLP's points
    passed = parallel.make_train_step(functools.partial(mixup_step, config=spec), mesh,
                                      preprocess=preprocess,
                                      constants=preprocess_constants(splits), donate=False)
    closed_over = parallel.make_train_step(functools.partial(mixup_step, config=spec), mesh,
                                           preprocess=preprocess, donate=False)
    key = jax.random.key(1)
    assert matrix_literals(closed_over.lower(state, batch, key).as_text())  # the old way
    assert not matrix_literals(passed.lower(state, batch, key).as_text())
    # Both compute the same update.
    new, old = passed(state, batch, key)[0], closed_over(state, batch, key)[0]
    assert jax.tree.all(jax.tree.map(lambda a, b: np.allclose(a, b, atol=1e-6), new.params,
                                     old.params))


def test_final_evaluation_whitens_like_the_in_loop_evaluation():
    splits = whitened_splits()
    mesh = parallel.make_mesh(jax.devices()[:1])
    model = get_model("mlp", num_classes=3, widths=(16,))
    state = create_train_state(model, optax.sgd(0.1), jax.random.key(2),
                               np.zeros((4, 4, 4, 3), np.float32))
    constants = preprocess_constants(splits)
    eval_step = parallel.make_eval_step(mesh, preprocess=eval_preprocess(splits),
                                        constants=constants)
    in_loop = evaluate_dataset(eval_step, state, splits.test, 8, mesh)
    final = full_evaluation(state, splits.test, InputSpace(MEAN, STD, whiten=True),
                            EvalSettings(fgsm_epsilon=0.1), 8, mesh, 3, constants)
    assert final["accuracy"] == in_loop["accuracy"]
    np.testing.assert_allclose(final["nll"], in_loop["nll"], rtol=1e-5)
    unwhitened = full_evaluation(state, splits.test, InputSpace(MEAN, STD), EvalSettings(), 8,
                                 mesh, 3)
    assert abs(unwhitened["nll"] - in_loop["nll"]) > 1e-3  # what the final evaluation did before
