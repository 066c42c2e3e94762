"""Host-side transforms for images of varying size (ImageNet), run in the loader's threads.

Training: the Inception-style random-resized crop (area 8–100 % of the image, aspect ratio
3/4–4/3, then resized to size × size) and a horizontal flip, as in the mixup ImageNet
experiments (Zhang et al. 2018, following Goyal et al. 2017). Evaluation: resize the shorter
side to size / 0.875 (256 for 224) and take the centre size × size. Both as one PIL resize of
the crop box; JPEG bytes are decoded at a reduced scale where the crop allows (PIL's `draft`),
as production ImageNet pipelines do. PIL's decode and resize release the GIL, which is why
threads suffice.
"""

from __future__ import annotations

import io
import math
from typing import Optional, Union

import numpy as np
from PIL import Image

TRANSFORMS = ("", "inception_crop")
CENTRE_FRACTION = 0.875


def crop_window(height: int, width: int, rng: np.random.Generator,
                scale: tuple[float, float] = (0.08, 1.0),
                ratio: tuple[float, float] = (3 / 4, 4 / 3), attempts: int = 10
                ) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random crop with area fraction in `scale` and aspect ratio
    (w / h) in `ratio` (log-uniform); after `attempts` misses, the centre crop of the nearest
    allowed ratio."""
    area = height * width
    for _ in range(attempts):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif aspect > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def _decoded(encoded: bytes, width: int, height: int, box: tuple[float, float, float, float],
             size: int) -> tuple[Image.Image, tuple[float, float, float, float]]:
    """The JPEG decoded at the smallest of its 1/1, 1/2, 1/4, 1/8 scales at which `box` (in
    full-size pixels) still covers at least size × size pixels (libjpeg's DCT scaling: decode
    cost falls with the scale), and `box` in that image's pixels."""
    image = Image.open(io.BytesIO(encoded))
    left, top, right, bottom = box
    needed = size / max(min(right - left, bottom - top), 1e-9)
    image.draft("RGB", (math.ceil(width * needed), math.ceil(height * needed)))
    image = image.convert("RGB")
    fx, fy = image.size[0] / width, image.size[1] / height  # the scaled sides are rounded
    return image, (left * fx, top * fy, min(right * fx, image.size[0]),
                   min(bottom * fy, image.size[1]))


def inception_crop(image: Union[np.ndarray, bytes], rng: Optional[np.random.Generator],
                   size: int) -> np.ndarray:
    """Training (rng given): random-resized crop and flip to size × size; evaluation (rng
    None): the centre crop. In: uint8 [H, W, C], or JPEG bytes (decoded only as finely as the
    crop needs); out: uint8 [size, size, C]."""
    encoded = isinstance(image, (bytes, np.bytes_))
    if encoded:
        width, height = Image.open(io.BytesIO(image)).size
    else:
        height, width = image.shape[:2]
    flip = False
    if rng is None:
        scale = round(size / CENTRE_FRACTION) / min(height, width)
        crop = size / scale  # the centre size × size of the resized image, in original pixels
        left, top = (width - crop) / 2, (height - crop) / 2
        box = (left, top, left + crop, top + crop)
    else:
        top, left, h, w = crop_window(height, width, rng)
        box = (left, top, left + w, top + h)
        flip = rng.random() < 0.5
    if encoded:
        pil, box = _decoded(image, width, height, box, size)
        out = np.asarray(pil.resize((size, size), Image.BILINEAR, box=box))
    else:
        grey = image.shape[-1] == 1
        pil = Image.fromarray(image[..., 0] if grey else image)
        out = np.asarray(pil.resize((size, size), Image.BILINEAR, box=box))
        out = out[..., None] if grey else out
    return np.ascontiguousarray(out[:, ::-1]) if flip else out


__all__ = ["CENTRE_FRACTION", "TRANSFORMS", "crop_window", "inception_crop"]
