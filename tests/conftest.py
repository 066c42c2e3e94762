import os
import pathlib
import shutil
import sys
import tempfile

import pytest

# Test helpers (cli_runs.py, sharded_checks.py, ...) live beside the tests, in this folder.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from session_settings import FAST_COMPILE_XLA_FLAGS  # noqa: E402
from shared_data import FASHION_MNIST  # noqa: E402

# One persistent XLA compilation cache for the whole session: the xdist workers and every
# subprocess they start (CLI runs, sharded checks) inherit it, so a program compiled by one
# test is loaded, not compiled again, by the next. A size limit turns on JAX's file lock, which
# makes concurrent readers and writers safe. Tests that configure a cache of their own
# (config.compilation_cache_dir) still use theirs.
_CACHE_VARIABLES = {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.2",
                    "JAX_COMPILATION_CACHE_MAX_SIZE": str(4 << 30)}




def pytest_configure(config):
    if hasattr(config, "workerinput") or "JAX_COMPILATION_CACHE_DIR" in os.environ:
        return  # an xdist worker (it inherited the controller's), or the caller chose one
    config._mmix_xla_cache = tempfile.mkdtemp(prefix="mmix_jax_tests_xla_cache_")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = config._mmix_xla_cache
    os.environ.update(_CACHE_VARIABLES)
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE_XLA_FLAGS}".strip()


def pytest_unconfigure(config):
    cache = getattr(config, "_mmix_xla_cache", None)
    if cache:
        shutil.rmtree(cache, ignore_errors=True)


# Files whose tests take longest (subprocess runs), in that order, run first: pytest-xdist hands
# out whole files (--dist loadfile) in collection order, so a long file left to the end would
# keep one worker busy while the other idles.
LONGEST_FIRST = ("harness/test_two_processes.py", "data/test_streaming.py",
                 "harness/test_faults.py", "harness/test_parallel.py",
                 "harness/test_fashion_mnist_run.py", "data/test_data_tfds.py",
                 "scripts/test_benchmark.py", "harness/test_slow_first_process.py",
                 "harness/test_default_job.py", "harness/test_semi_supervised_runs.py",
                 "harness/test_host.py")


def pytest_collection_modifyitems(config, items):
    def rank(item):
        path = item.path.as_posix()
        return next((i for i, name in enumerate(LONGEST_FIRST) if path.endswith(name)),
                    len(LONGEST_FIRST))

    items.sort(key=rank)  # stable: the order within a file, and of the rest, is kept


@pytest.fixture(scope="session")
def fashion_data_dir(tmp_path_factory):
    """A TFDS data_dir with Fashion-MNIST prepared from the original archives, once per
    session for all xdist workers (tests that use it are marked needs_fashion_mnist, which
    skips them without the archives)."""
    import filelock

    from mmix_jax.data import tfds_source

    shared = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:
        shared = shared.parent  # the base folder every worker's own folder sits in
    data_dir, done = shared / "tfds_fashion_mnist", shared / "tfds_fashion_mnist.done"
    with filelock.FileLock(str(shared / "tfds_fashion_mnist.lock")):
        if not done.exists():
            tfds_source.prepare("fashion_mnist", str(data_dir), str(FASHION_MNIST))
            done.touch()
    return data_dir
