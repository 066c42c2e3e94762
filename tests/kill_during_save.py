"""Test seam: `python tests/kill_during_save.py STEP FLAGS...` runs mmix-train with FLAGS and
SIGKILLs the process right after the (asynchronous) save of checkpoint STEP has started."""

import os
import signal
import sys

from mmix_jax.harness import checkpoint, main

KILL_AT = int(sys.argv.pop(1))
_save = checkpoint.Checkpoints.save


def save_then_kill(self, step, *args, **kwargs):
    blocked = _save(self, step, *args, **kwargs)
    if step == KILL_AT:
        os.kill(os.getpid(), signal.SIGKILL)
    return blocked


checkpoint.Checkpoints.save = save_then_kill
main.run_cli()
