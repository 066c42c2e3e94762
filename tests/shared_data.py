"""The data sets in ../shared/datasets beside the checkout, and the marker that skips a test,
saying why, where they are absent."""

import pathlib

import pytest

SHARED_DATASETS = pathlib.Path(__file__).resolve().parents[2] / "shared" / "datasets"
FASHION_MNIST = SHARED_DATASETS / "fashion_mnist"
FASHION_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

needs_fashion_mnist = pytest.mark.skipif(
    not all((FASHION_MNIST / f).is_file() for f in FASHION_FILES),
    reason=f"the original Fashion-MNIST archives are not at {FASHION_MNIST} (they sit in "
           "../shared/datasets beside the project checkout on the CI machines)")
