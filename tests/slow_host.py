"""One of two processes (argv: PORT PROCESS_ID SLEEP_S) for the slow-host test: process 0's
"preparation" sleeps SLEEP_S seconds while process 1 waits in coordination.process_zero_first;
then a device collective must work. Also: process 0's failure reaches process 1 as its message,
and a wait past its timeout is a DataError naming config.data.prepare_timeout_s."""

import sys
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

from mmix_jax.data.coordination import process_zero_first
from mmix_jax.errors import DataError

port, process_id, sleep_s = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=process_id)
first = process_id == 0


def failing():
    if first:
        raise OSError("disk full")
    raise AssertionError("process 1 must not run the work after process 0 failed")


try:
    process_zero_first(failing, "failing preparation", timeout_s=60)
except (OSError, DataError) as error:
    print(f"failure: {error}", flush=True)

try:
    process_zero_first(lambda: time.sleep(4 if first else 0), "too slow", timeout_s=1)
    print("too slow: finished", flush=True)
except DataError as error:
    print(f"timeout: {error}", flush=True)

started = time.time()
process_zero_first(lambda: time.sleep(sleep_s if first else 0), "slow preparation",
                   timeout_s=sleep_s + 120)
waited = time.time() - started
total = multihost_utils.process_allgather(np.array([process_id + 1.0]), tiled=True)
print(f"slow: waited {waited:.1f} s, allgather {total.tolist()}", flush=True)
