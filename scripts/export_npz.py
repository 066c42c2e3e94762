#!/usr/bin/env python3
"""Writes a TFDS image dataset as one .npz (image, label, test_image, test_label), the format
of `config.data.name = "npz"`: for machines without TensorFlow, or to freeze the exact arrays.

    python scripts/export_npz.py --dataset fashion_mnist --manual_dir ARCHIVES --out fmnist.npz
"""

from __future__ import annotations

import argparse
import tempfile

import ml_collections
import numpy as np

from mmix_jax.data.datasets import read_tfds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="a TFDS name, e.g. fashion_mnist")
    parser.add_argument("--manual_dir", default="", help="folder of the original archives")
    parser.add_argument("--data_dir", default="", help="TFDS data_dir (default: a temporary one)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        train, test = read_tfds(ml_collections.ConfigDict(dict(
            name=args.dataset, data_dir=args.data_dir or scratch, manual_dir=args.manual_dir)))
    np.savez_compressed(args.out, image=train.images, label=train.labels,
                        test_image=test.images, test_label=test.labels)
    print(f"{args.out}: train {train.images.shape}, test {test.images.shape}")


if __name__ == "__main__":
    main()
