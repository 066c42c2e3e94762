"""Test seam: `python tests/preemption_seam.py FLAGS...` runs mmix-train with FLAGS and prints,
to stderr, each SIGTERM received, each evaluation started and each checkpoint save started, in
order ("SEAM sigterm", "SEAM evaluate", "SEAM save STEP"): what a preempted run did first."""

import sys

from mmix_jax.harness import checkpoint, main, preemption, train

_handle, _save, _evaluate = (preemption.Preemption._handle, checkpoint.Checkpoints.save,
                             train.evaluate_dataset)


def handle(self, signum, frame):
    print("SEAM sigterm", file=sys.stderr, flush=True)
    return _handle(self, signum, frame)


def save(self, step, *args, **kwargs):
    print(f"SEAM save {step}", file=sys.stderr, flush=True)
    return _save(self, step, *args, **kwargs)


def evaluate(*args, **kwargs):
    print("SEAM evaluate", file=sys.stderr, flush=True)
    return _evaluate(*args, **kwargs)


preemption.Preemption._handle, checkpoint.Checkpoints.save = handle, save
train.evaluate_dataset = evaluate
main.run_cli()
