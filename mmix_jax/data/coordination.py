"""Waiting for one process's long work (a dataset preparation) without a device collective.

`process_zero_first(work, name, timeout_s)`: process 0 runs `work` while the others wait on the
distributed runtime's key-value store (the coordination service `jax.distributed.initialize`
started), then they run it too. A device collective (`multihost_utils.sync_global_devices`)
would instead open its Gloo/NCCL connections while process 0 is still busy, and those time out
on their own clock (seen here as `Gloo context initialization failed: Connect timeout` on a
busy host); the key-value wait has only the timeout given here. Process 0 publishes "done" or
its error, so a failed preparation stops every process at once with the same message.
"""

from __future__ import annotations

import itertools
from typing import Callable, TypeVar

import jax

from mmix_jax.errors import DataError

T = TypeVar("T")
DONE = "done"
_calls = itertools.count()  # every process makes the same calls in the same order


def _client():
    """The coordination service client of `jax.distributed.initialize` (no public accessor in
    JAX yet; `multihost_utils` reads the same object)."""
    from jax._src import distributed
    client = distributed.global_state.client
    if client is None:
        raise RuntimeError("several JAX processes but no distributed client: call "
                           "jax.distributed.initialize (mmix-train --distributed) first.")
    return client


def process_zero_first(work: Callable[[], T], name: str, timeout_s: float) -> T:
    """`work()` on process 0 first, then on the others (which wait at most `timeout_s` seconds
    for it: a DataError naming `config.data.prepare_timeout_s` past that). One process: just
    `work()`."""
    if jax.process_count() == 1:
        return work()
    client = _client()
    key = f"mmix_jax/{name}/{next(_calls)}"
    if jax.process_index() == 0:
        try:
            result = work()
        except BaseException as error:
            client.key_value_set(key, f"failed on process 0: {type(error).__name__}: {error}")
            raise
        client.key_value_set(key, DONE)
        return result
    try:
        status = client.blocking_key_value_get(key, int(timeout_s * 1000))
    except Exception as error:  # the runtime's deadline error; its type is not public
        raise DataError(
            f"process {jax.process_index()} waited {timeout_s:.0f} s for process 0 to finish "
            f"{name!r} and gave up ({type(error).__name__}): raise config.data.prepare_timeout_s "
            "if preparing takes longer, or prepare the data set once beforehand.") from None
    if status != DONE:
        raise DataError(f"{name!r} {status}")
    return work()


__all__ = ["process_zero_first"]
