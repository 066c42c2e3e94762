"""Image data from a local .npz file, as users keep their own data.

Keys: `image` uint8 [N, H, W, C] and `label` integer [N]; optionally `test_image` and
`test_label` of the same kinds. Without test arrays the test split is taken from the file,
`config.data.test_per_class` examples per class chosen by the seed (mmix_jax.data.splits).
Every problem with the file is one DataError naming the file, the key and the fix.
"""

from __future__ import annotations

import pathlib
import zipfile

import numpy as np

from mmix_jax.data.pipeline import ArrayDataset
from mmix_jax.errors import DataError

REQUIRED_KEYS = ("image", "label")
TEST_KEYS = ("test_image", "test_label")


def _arrays(path: pathlib.Path, file: np.lib.npyio.NpzFile, image_key: str,
            label_key: str) -> ArrayDataset:
    images, labels = file[image_key], file[label_key]
    if images.dtype != np.uint8 or images.ndim != 4:
        raise DataError(f"{path}: '{image_key}' is {images.dtype}{list(images.shape)}; expected "
                        "uint8 [N, height, width, channels] (add a channel axis to grey images: "
                        "image[..., None]).")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: '{label_key}' is {labels.dtype}{list(labels.shape)}; expected "
                        "an integer vector [N].")
    if labels.shape[0] != images.shape[0]:
        raise DataError(f"{path}: {images.shape[0]} images in '{image_key}' but "
                        f"{labels.shape[0]} labels in '{label_key}'.")
    return ArrayDataset(images, labels.astype(np.int32))


def read_npz(path: str | pathlib.Path) -> tuple[ArrayDataset, ArrayDataset | None]:
    """(train, test or None) from the file; DataError for a missing or malformed file."""
    path = pathlib.Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"config.data.path = '{path}' is not a file: give the .npz holding "
                        "'image' and 'label'.")
    try:
        file = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise DataError(f"{path} is not a readable .npz file ({error}).") from None
    with file:
        missing = [key for key in REQUIRED_KEYS if key not in file.files]
        if missing:
            raise DataError(f"{path} lacks {missing} (it has {sorted(file.files)}): save uint8 "
                            "'image' [N, H, W, C] and integer 'label' [N].")
        train = _arrays(path, file, *REQUIRED_KEYS)
        present = [key for key in TEST_KEYS if key in file.files]
        if len(present) == 1:
            raise DataError(f"{path} has '{present[0]}' without its partner: give both "
                            f"{list(TEST_KEYS)} or neither.")
        test = _arrays(path, file, *TEST_KEYS) if present else None
    return train, test


__all__ = ["REQUIRED_KEYS", "TEST_KEYS", "read_npz"]
