"""Data for the harness and the evaluation: sources (TFDS, npz, generated points), splits,
host- and device-side transforms, and grain streaming.

Import the module you need (`mmix_jax.data.datasets` loads a dataset by name from a config,
`mmix_jax.data.augment` holds the on-device augmentation). This package imports nothing
itself, so on-device pieces such as `augment` work without the `[train]` extra; the sources and
the streaming path need it (TFDS, grain, array_record).
"""
