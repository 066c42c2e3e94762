"""The experiment harness: config → RunSpec → training loop → checkpoints → summaries, the
`mmix-train` command, studies and figures.

It needs the `[train]` extra (`pip install 'mmix_jax[train]'`): ml_collections, absl, orbax,
TFDS with TensorFlow, grain, clu, matplotlib. The library (`mmix_jax`) never imports it.
"""

from __future__ import annotations

import importlib.util
import sys

# The top-level modules the harness imports that only the `[train]` extra installs.
TRAIN_EXTRA_MODULES = ("absl", "ml_collections", "orbax.checkpoint", "grain", "array_record",
                       "tensorflow_datasets", "tensorflow", "clu", "matplotlib", "PIL")
TRAIN_EXTRA_HINT = "pip install 'mmix_jax[train]'"


def missing_train_modules() -> list[str]:
    """The modules of the `[train]` extra that cannot be imported here."""
    missing = []
    for name in TRAIN_EXTRA_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ImportError:  # a parent package is missing, or an import hook refuses it
            found = False
        if not found:
            missing.append(name)
    return missing


def run_cli() -> None:
    """`mmix-train`: the harness's command, or one line naming the extra when it is missing."""
    missing = missing_train_modules()
    if missing:
        sys.exit(f"mmix-train needs the training extra, which is not installed "
                 f"(missing: {', '.join(missing)}): {TRAIN_EXTRA_HINT}")
    from mmix_jax.harness import main

    main.run_cli()
