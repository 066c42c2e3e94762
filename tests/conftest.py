import pathlib
import sys

import pytest

# Test helpers (cli_runs.py, sharded_checks.py) live beside the tests.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

FASHION_MNIST = pathlib.Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fashion_mnist"


@pytest.fixture(scope="session")
def fashion_data_dir(tmp_path_factory):
    """A TFDS data_dir with Fashion-MNIST prepared from the original archives, once per session
    (tests that use it are marked needs_fashion_mnist, which skips them without the archives)."""
    from mmix_jax.data import tfds_source

    data_dir = tmp_path_factory.mktemp("tfds")
    tfds_source.prepare("fashion_mnist", str(data_dir), str(FASHION_MNIST))
    return data_dir
