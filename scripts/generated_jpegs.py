"""A small ImageNet-shaped TFDS data set written by the tests and scripts/loader_benchmark.py:
JPEGs of several sizes in ArrayRecord files, read back by name
(`tfds.builder(NAME, data_dir=...)`) without this module, as TFDS reads any prepared data set.

    python scripts/generated_jpegs.py DATA_DIR [--train N] [--test N] [--side S]
"""

import argparse
import io
import pathlib

import numpy as np

NAME = "generated_jpegs"
CLASSES = 4


def _jpeg(rng: np.random.Generator, label: int, height: int, width: int) -> bytes:
    """A flat picture in the label's colour with a grey rectangle at a random place: cheap to
    make and to compress at any size (so the decoded data set can be large while the files and
    the test stay small), and learnable from its colours."""
    from PIL import Image

    colour = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [200, 200, 40]][label],
                      np.uint8)
    image = np.empty((height, width, 3), np.uint8)
    image[...] = colour
    top, left = int(rng.integers(0, height // 2)), int(rng.integers(0, width // 2))
    image[top:top + height // 3, left:left + width // 3] = 128
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def make(data_dir: str | pathlib.Path, train: int = 256, test: int = 32, side: int = 96,
         seed: int = 0) -> pathlib.Path:
    """Writes NAME into data_dir (train / validation splits, image sides in [side/2, side])
    and returns its folder; a no-op when it is already there."""
    builder = _builder_class()(data_dir=str(data_dir), file_format="array_record",
                               config=None)
    builder.counts, builder.side, builder.seed = (train, test), side, seed
    builder.download_and_prepare(file_format="array_record")
    return pathlib.Path(builder.data_dir)


_CLASS = []


def _builder_class():
    """The TFDS builder, defined once per process (TFDS registers builders by class name)."""
    if _CLASS:
        return _CLASS[0]
    import tensorflow_datasets as tfds

    class GeneratedJpegs(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                "label": tfds.features.ClassLabel(num_classes=CLASSES)}))

        def _split_generators(self, dl_manager):
            rng = np.random.default_rng(self.seed)
            return {"train": self._generate_examples(self.counts[0], "train", rng),
                    "validation": self._generate_examples(self.counts[1], "validation", rng)}

        def _generate_examples(self, count, split, rng):
            side = self.side
            for i in range(count):
                label = i % CLASSES
                height, width = (int(v) for v in rng.integers(side // 2, side + 1, size=2))
                yield f"{split}-{i}", {"image": io.BytesIO(_jpeg(rng, label, height, width)),
                                       "label": label}

    _CLASS.append(GeneratedJpegs)
    return GeneratedJpegs


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir")
    parser.add_argument("--train", type=int, default=256)
    parser.add_argument("--test", type=int, default=32)
    parser.add_argument("--side", type=int, default=96)
    args = parser.parse_args()
    print(make(args.data_dir, args.train, args.test, args.side))
