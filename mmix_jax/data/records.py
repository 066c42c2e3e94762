"""Random-access record sources for data read on demand instead of held in host memory.

- `NpzRecords`: the arrays of an uncompressed .npz (`np.savez`) memory-mapped, so reading
  record i touches only its bytes (a compressed .npz cannot be mapped: refused with the fix).
- `TfdsRecords`: a TFDS split prepared as ArrayRecord files, through TFDS's data source.
- `RecordDataset`: a source, the rows of it that form a split, and the host transform that turns
  a decoded record into a fixed-size uint8 image (`host_transforms`). `take(rows, rngs)` reads,
  transforms and stacks rows like `ArrayDataset.take`.
"""

from __future__ import annotations

import dataclasses
import pathlib
import zipfile
from typing import Any, Callable, Optional, Protocol, Sequence

import numpy as np

from mmix_jax.errors import DataError

HostTransform = Callable[[np.ndarray, Optional[np.random.Generator]], np.ndarray]


class RecordSource(Protocol):
    def __len__(self) -> int: ...
    def __getitem__(self, index: int) -> tuple[Any, int]: ...  # (uint8 image or bytes, label)


def _npz_member(path: pathlib.Path, archive: zipfile.ZipFile, key: str) -> np.ndarray:
    """The array `key` of an uncompressed .npz, memory-mapped at its offset in the zip."""
    info = archive.getinfo(f"{key}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        raise DataError(f"{path}: '{key}' is compressed (np.savez_compressed), so it cannot be "
                        "read record by record; save the file with np.savez, or set "
                        "config.data.streaming=False to read it whole.")
    with open(path, "rb") as file:
        file.seek(info.header_offset)
        local_header = file.read(30)
        name_length = int.from_bytes(local_header[26:28], "little")
        extra_length = int.from_bytes(local_header[28:30], "little")
        file.seek(info.header_offset + 30 + name_length + extra_length)
        version = np.lib.format.read_magic(file)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0) else
                       np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(file)
        offset = file.tell()
    if fortran or dtype.hasobject:
        raise DataError(f"{path}: '{key}' is not a C-ordered plain array; save it with np.savez.")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)


class NpzRecords:
    """Record i = (image[i], label[i]) of `prefix`image / `prefix`label in an uncompressed npz
    (the keys of `npz_source`), memory-mapped: the page cache, not this process, holds them."""

    def __init__(self, path: str | pathlib.Path, prefix: str = ""):
        self.path = pathlib.Path(path).expanduser()
        try:
            with zipfile.ZipFile(self.path) as archive:
                self.images = _npz_member(self.path, archive, f"{prefix}image")
                self.labels = np.asarray(_npz_member(self.path, archive, f"{prefix}label"),
                                         np.int32)
        except (OSError, KeyError, zipfile.BadZipFile) as error:
            raise DataError(f"{self.path}: cannot map '{prefix}image'/'{prefix}label' "
                            f"({type(error).__name__}: {error}).") from None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return np.asarray(self.images[index]), int(self.labels[index])

    def __repr__(self) -> str:
        return f"NpzRecords({str(self.path)!r}, {len(self)})"


class TfdsRecords:
    """Record i of a TFDS split in ArrayRecord format (the builder's `as_data_source`):
    (image, label)."""

    def __init__(self, builder: Any, split: str, encoded: bool = False):
        import tensorflow_datasets as tfds

        # encoded: images stay JPEG/PNG bytes, for a host transform that decodes them itself
        decoders = {"image": tfds.decode.SkipDecoding()} if encoded else None
        try:
            self._source = builder.as_data_source(split=split, decoders=decoders,
                                                  file_format="array_record")
        except Exception as error:  # noqa: BLE001 - TFDS raises many kinds for this
            raise DataError(
                f"{builder.info.name} split {split!r} in {builder.data_dir} cannot be read as "
                f"ArrayRecord files ({type(error).__name__}: {str(error)[:300]}): prepare it "
                "with file_format='array_record' (a new config.data.data_dir does), or set "
                "config.data.streaming=False.") from None
        self.name, self.split = builder.info.name, split

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        record = self._source[int(index)]
        image = record["image"]
        if isinstance(image, (bytes, np.bytes_)):
            return image, int(record["label"])
        image = np.asarray(image)
        return (image if image.ndim == 3 else image[..., None]), int(record["label"])

    def __repr__(self) -> str:
        return f"TfdsRecords({self.name!r}, {self.split!r}, {len(self)})"


@dataclasses.dataclass(frozen=True)
class RecordDataset:
    """A split read on demand: `rows` of `source` (None: all), each image passed through
    `transform` (None: records already have the model's shape)."""

    source: RecordSource
    rows: Optional[np.ndarray] = None
    transform: Optional[HostTransform] = None

    def __len__(self) -> int:
        return len(self.source) if self.rows is None else int(self.rows.shape[0])

    def _key(self, row: int) -> int:
        return int(row) if self.rows is None else int(self.rows[row])

    def take(self, rows: Sequence[int], rngs: Optional[Sequence[np.random.Generator]] = None
             ) -> dict[str, np.ndarray]:
        """{"image": uint8 [len(rows), H, W, C], "label": int32} of these rows (positions in
        the split); `rngs`, one per row, drive a random transform (None: its evaluation form)."""
        images, labels = [], []
        for i, row in enumerate(rows):
            image, label = self.source[self._key(row)]
            if self.transform is not None:
                image = self.transform(image, None if rngs is None else rngs[i])
            images.append(image)
            labels.append(label)
        return {"image": np.stack(images), "label": np.asarray(labels, np.int32)}

    def subset(self, rows: np.ndarray) -> "RecordDataset":
        """The split made of these rows of this one (positions in it)."""
        keys = np.asarray(rows) if self.rows is None else self.rows[np.asarray(rows)]
        return dataclasses.replace(self, rows=keys)

    def labels(self) -> np.ndarray:
        """Every label of the split: cheap for mapped npz labels, a full read otherwise."""
        labels = getattr(self.source, "labels", None)
        if labels is not None:
            return labels if self.rows is None else labels[self.rows]
        return np.asarray([self.source[self._key(i)][1] for i in range(len(self))], np.int32)


__all__ = ["NpzRecords", "RecordDataset", "RecordSource", "TfdsRecords"]
