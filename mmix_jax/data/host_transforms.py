"""Host-side transforms for images of varying size (ImageNet), run in the loader's threads.

Training: the Inception-style random-resized crop (area 8–100 % of the image, aspect ratio
3/4–4/3, then resized to size × size) and a horizontal flip, as in the mixup ImageNet
experiments (Zhang et al. 2018, following Goyal et al. 2017). Evaluation: resize the shorter
side to size / 0.875 (256 for 224) and take the centre size × size. PIL's resize and decode
release the GIL, which is why threads suffice.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
from PIL import Image

TRANSFORMS = ("", "inception_crop")
CENTRE_FRACTION = 0.875


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    grey = image.shape[-1] == 1
    pil = Image.fromarray(image[..., 0] if grey else image)
    out = np.asarray(pil.resize((width, height), Image.BILINEAR))
    return out[..., None] if grey else out


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


def inception_crop(image: np.ndarray, rng: Optional[np.random.Generator], size: int
                   ) -> np.ndarray:
    """Training (rng given): random-resized crop and flip to size × size; evaluation (rng
    None): the centre crop. uint8 [H, W, C] in and out."""
    height, width = image.shape[:2]
    if rng is None:
        short = round(size / CENTRE_FRACTION)
        scale = short / min(height, width)
        h, w = max(size, round(height * scale)), max(size, round(width * scale))
        resized = _resize(image, w, h)
        top, left = (h - size) // 2, (w - size) // 2
        return resized[top:top + size, left:left + size]
    top, left, h, w = crop_window(height, width, rng)
    out = _resize(image[top:top + h, left:left + w], size, size)
    return out[:, ::-1] if rng.random() < 0.5 else out


__all__ = ["CENTRE_FRACTION", "TRANSFORMS", "crop_window", "inception_crop"]
