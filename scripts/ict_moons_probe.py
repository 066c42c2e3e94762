#!/usr/bin/env python3
"""Does ICT's interpolation consistency favour a boundary in the two moons' gap?

The moons demo (configs/ssl_moons.py) shows no semi-supervised gain. This probe asks whether
the consistency term itself prefers the gap, with the demo's ICT settings (network, SGD,
α, weight, ramp, teacher) and the library's step, per seed:

1. Every training point labelled, ICT's labelled term alone (w = 0) against the same with
   ICT's consistency term (w_max of the demo). A term that favoured the gap could not cost
   accuracy when every point is labelled.
2. Six labels placed as in the ICT paper's Figure 1 (upper-moon labels left of x = −0.1,
   lower-moon labels right of x = 0.4, in our shifted coordinates): labelled term alone
   against ICT, the figure's own experiment.
3. ICT's consistency loss of each trained network at matched logit scale (the logits scaled
   so their mean absolute value over the training points is 2, 5 or 10), for α = 1 and 0.1:
   lower means the consistency term prefers that network's boundary.
4. For each network, and for the Bayes classifier of the generator, the share of the training
   points within 0.1 of its decision boundary (`mmix_jax.separation`): a boundary in the gap
   passes near few of them.

    python scripts/ict_moons_probe.py --seeds 0 1 2 --out docs/results/ict_moons_probe.json
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import pathlib
import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from configs import ssl_moons  # noqa: E402
from mmix_jax.configuration import build_model, optimizer_spec  # noqa: E402
from mmix_jax.data.synthetic import two_moons, two_moons_log_odds  # noqa: E402
from mmix_jax.optim import make_optimizer  # noqa: E402
from mmix_jax.semi_supervised import consistency_loss, ssl_mixup_step  # noqa: E402
from mmix_jax.semi_supervised_config import semi_supervised_run  # noqa: E402
from mmix_jax.runs import GRID_AXIS  # noqa: E402
from mmix_jax.separation import grid_points, share_near_boundary  # noqa: E402
from mmix_jax.state import create_train_state, with_teacher  # noqa: E402

FIGURE_LABEL_REGIONS = (-0.1, 0.4)  # class 0 labels at x < -0.1, class 1 labels at x > 0.4
SCALES = (2.0, 5.0, 10.0)
ALPHAS = (1.0, 0.1)
PAIRS = 20_000
GRID_POINTS = grid_points(GRID_AXIS)  # the demo figure's grid

Predict = Callable[[np.ndarray], jax.Array]  # points [N, 2] -> logits [N, 2]


def train(config: ml_collections.ConfigDict, labelled: tuple[np.ndarray, np.ndarray],
          pool: np.ndarray, *, weight_max: float, seed: int) -> Predict:
    """The demo's ICT run on `labelled` (every point in every update) and unlabelled batches
    from `pool`, with w_max = `weight_max`. Returns the logits of the network the library
    evaluates: the mean teacher when the run has one, else the network itself."""
    model = build_model(config)
    run = semi_supervised_run(config, model)
    steps_per_epoch = len(pool) // run.unlabeled_batch_size
    spec = run.step_spec(steps_per_epoch)
    spec = dataclasses.replace(spec, unsupervised_weight_max=weight_max)
    tx, _ = make_optimizer(optimizer_spec(config.optimizer, config.num_epochs), steps_per_epoch)
    state = create_train_state(model, tx, jax.random.key(seed), jnp.asarray(pool[:2]),
                               init=config.model.init)
    if spec.uses_teacher:
        state = with_teacher(state)
    step = jax.jit(functools.partial(ssl_mixup_step, config=spec))
    batch = {"image": jnp.asarray(labelled[0]), "label": jnp.asarray(labelled[1])}
    rng = np.random.default_rng(seed + 1)
    key = jax.random.key(seed + 2)
    for index in range(config.num_epochs * steps_per_epoch):
        chosen = rng.choice(len(pool), run.unlabeled_batch_size, replace=False)
        state, _ = step(state, batch, {"image": jnp.asarray(pool[chosen])},
                        jax.random.fold_in(key, index))
    params = state.teacher["params"] if spec.uses_teacher else state.params
    return jax.jit(lambda x: model.apply({"params": params}, x, train=False))


def consistency_at_scales(predict: Predict, points: np.ndarray, seed: int) -> dict[str, float]:
    """ICT's consistency loss (softmax MSE against the softmax of mixed logits, the network
    as its own teacher) over random pairs of `points`, per α and matched logit scale."""
    rng = np.random.default_rng(seed)
    first, second = rng.integers(0, len(points), (2, PAIRS))
    logits_a, logits_b = predict(points[first]), predict(points[second])
    unit = float(jnp.mean(jnp.abs(predict(points))))
    results = {}
    for alpha in ALPHAS:
        lam = rng.beta(alpha, alpha, (PAIRS, 1)).astype(np.float32)
        mixed = predict(lam * points[first] + (1 - lam) * points[second])
        targets = lam * logits_a + (1 - lam) * logits_b
        for scale in SCALES:
            factor = scale / unit
            results[f"alpha {alpha:g}, |logit| {scale:g}"] = float(
                consistency_loss(factor * mixed, factor * targets, "mean_teacher"))
    return results


def figure_labels(images: np.ndarray, labels: np.ndarray, per_class: int, seed: int):
    """`per_class` labelled points per class inside the ICT figure's regions."""
    rng = np.random.default_rng(seed)
    left, right = FIGURE_LABEL_REGIONS
    pools = [np.flatnonzero((labels == 0) & (images[:, 0] < left)),
             np.flatnonzero((labels == 1) & (images[:, 0] > right))]
    chosen = np.concatenate([rng.choice(pool, per_class, replace=False) for pool in pools])
    return images[chosen], labels[chosen]


def probe_seed(seed: int, epochs: int = 0) -> list[dict]:
    """The four runs of one seed (module docstring); `epochs` > 0 replaces the demo's."""
    config = ssl_moons.get_config("ict")
    if epochs:
        config.num_epochs = epochs
        config.semi_supervised.rampup_epochs = min(config.semi_supervised.rampup_epochs, epochs)
    data = config.data
    train_set = two_moons(data.num_train, noise=data.noise, seed=seed)
    test_set = two_moons(data.num_test, noise=data.noise, seed=seed + 1000)
    weight = float(config.semi_supervised.unsupervised_weight_max)
    everything = (train_set.images, train_set.labels)
    six = figure_labels(train_set.images, train_set.labels, data.labels_per_class, seed)
    bayes_classes = two_moons_log_odds(GRID_POINTS, noise=data.noise) > 0
    rows = [{"seed": seed, "labels": "Bayes classifier (reference)", "test_accuracy": float(
                 np.mean((two_moons_log_odds(test_set.images, noise=data.noise) > 0)
                         == test_set.labels)),
             "near_boundary": share_near_boundary(train_set.images, GRID_AXIS, bayes_classes)}]
    for labelled_name, labelled in (("all 2,000 labelled", everything),
                                    ("6 labels, ICT figure placement", six)):
        for weight_max in (0.0, weight):
            start = time.time()
            predict = train(config, labelled, train_set.images, weight_max=weight_max,
                            seed=seed)
            accuracy = float(np.mean(np.argmax(predict(test_set.images), -1)
                                     == test_set.labels))
            classes = np.argmax(predict(GRID_POINTS), -1)
            rows.append({"seed": seed, "labels": labelled_name, "unsupervised_weight_max":
                         weight_max, "test_accuracy": accuracy,
                         "near_boundary": share_near_boundary(train_set.images, GRID_AXIS,
                                                              classes),
                         "consistency": consistency_at_scales(predict, train_set.images, seed),
                         "wall_s": round(time.time() - start, 1)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=0, help="0: the demo's 150")
    parser.add_argument("--out", type=pathlib.Path, default=None, help="JSON rows")
    args = parser.parse_args()
    rows = [row for seed in args.seeds for row in probe_seed(seed, args.epochs)]
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    print("| seed | labels | w_max | test acc | near boundary | consistency α 1, |logit| 5 "
          "| α 0.1, |logit| 5 |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        c = row.get("consistency", {})
        cells = [f"{c[key]:.4f}" if key in c else "–"
                 for key in ("alpha 1, |logit| 5", "alpha 0.1, |logit| 5")]
        print(f"| {row['seed']} | {row['labels']} | {row.get('unsupervised_weight_max', '–')} "
              f"| {row['test_accuracy']:.3f} | {100 * row['near_boundary']:.1f} % | "
              f"{cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
