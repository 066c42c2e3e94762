#!/usr/bin/env python3
"""Runs a PyTorch script unchanged on another device: sets PyTorch's default device, then runs it.

    python scripts/torch_on_device.py cuda scripts/torch_reference.py --batch 512 ...

The reference step builds its model and tensors without naming a device; with the default device
set they are made on the GPU, as a user moving the paper's code there would. Its timing stays
honest there: each step ends in `loss.item()`, which waits for the GPU.
"""

from __future__ import annotations

import runpy
import sys


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit("usage: torch_on_device.py DEVICE SCRIPT [ARGS...]")
    device, script, *script_args = argv
    import torch  # the benchmark's optional dependency, never mmix_jax's

    torch.set_default_device(device)
    sys.argv = [script, *script_args]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
