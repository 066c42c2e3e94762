#!/usr/bin/env python3
"""Class spectra at a mix point of finished runs, on their training images as well as test.

The runs' evaluation.json holds the test split's spectrum; the paper's flattening figures may be
on training data, so this restores each run's newest checkpoint and measures both:

    python scripts/train_spectra.py ~/studies/flattening_mnist --point 4
"""

from __future__ import annotations

import argparse
import json
import pathlib

import ml_collections

from mmix_jax import parallel
from mmix_jax.configuration import run_spec
from mmix_jax.data import load_dataset
from mmix_jax.evaluate import InputSpace, class_spectra, representation_fn, run_per_example
from mmix_jax.stored_runs import restore_newest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=pathlib.Path, help="a folder of finished runs")
    parser.add_argument("--point", type=int, default=4, help="the mix point (4: bottleneck)")
    args = parser.parse_args()
    mesh = parallel.make_mesh()
    for run in sorted(p for p in args.root.iterdir() if (p / "summary.json").exists()):
        spec = run_spec(ml_collections.ConfigDict(json.loads((run / "config.json").read_text())))
        splits = load_dataset(spec.data, spec.seed, spec.num_classes)
        state = restore_newest(spec, run, splits, mesh)
        hidden_fn = parallel.make_per_example_fn(
            mesh, representation_fn(InputSpace(splits.mean, splits.std), args.point))
        for name, data in (("train", splits.train), ("test", splits.test)):
            spectrum = class_spectra(run_per_example(hidden_fn, state, data, 500, mesh),
                                     data.labels, spec.num_classes)
            print(json.dumps({"run": run.name, "split": name, "examples": len(data),
                              "mean_first": round(spectrum["mean_first"], 2),
                              "mean_rest_sum": round(spectrum["mean_rest_sum"], 2)}))


if __name__ == "__main__":
    main()
