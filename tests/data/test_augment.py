"""Augmentation gives the exact shifted / mirrored pixels of a hand-made image."""

import jax
import jax.numpy as jnp
import numpy as np

from mmix_jax.data.augment import augment, crop_with_offsets, normalize, random_flip

IMAGE = np.arange(1, 17, dtype=np.uint8).reshape(1, 4, 4, 1)  # rows 1-4, 5-8, 9-12, 13-16


def test_crop_offsets_shift_the_image_with_zero_fill():
    centre = crop_with_offsets(IMAGE, jnp.array([[2, 2]]), padding=2)
    assert (centre == IMAGE).all()
    top_left = np.asarray(crop_with_offsets(IMAGE, jnp.array([[0, 0]]), padding=2))[0, :, :, 0]
    np.testing.assert_array_equal(top_left, [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 2], [0, 0, 5, 6]])
    down_right = np.asarray(crop_with_offsets(IMAGE, jnp.array([[3, 4]]), padding=2))[0, :, :, 0]
    np.testing.assert_array_equal(down_right, [[7, 8, 0, 0], [11, 12, 0, 0], [15, 16, 0, 0],
                                               [0, 0, 0, 0]])


def test_flip_mirrors_left_right_or_leaves_alone_both_occurring():
    images = jnp.broadcast_to(IMAGE, (64, 4, 4, 1))
    out = np.asarray(random_flip(jax.random.key(0), images))
    mirrored = IMAGE[:, :, ::-1]
    same = (out == IMAGE).all(axis=(1, 2, 3))
    flipped = (out == mirrored).all(axis=(1, 2, 3))
    assert (same | flipped).all() and same.any() and flipped.any()
    np.testing.assert_array_equal(mirrored[0, 0, :, 0], [4, 3, 2, 1])


def test_random_crop_stays_within_the_padding():
    images = jnp.broadcast_to(IMAGE, (200, 4, 4, 1))
    out = np.asarray(augment(jax.random.key(1), images, crop_padding=1, flip=False))
    padded = np.pad(IMAGE[0, :, :, 0], 1)
    windows = {padded[y:y + 4, x:x + 4].tobytes() for y in range(3) for x in range(3)}
    seen = {image[:, :, 0].tobytes() for image in out}
    assert seen <= windows and len(seen) == 9  # every offset in [0, 2p]² occurs, nothing else


def test_normalize_hand_computed():
    out = normalize(np.array([[[[0, 255]]]], np.uint8).reshape(1, 1, 1, 2), (0.5, 0.5), (0.25, 0.5))
    np.testing.assert_allclose(out.reshape(-1), [-2.0, 1.0], rtol=1e-6)
    assert normalize(IMAGE, (0.5,), (0.5,), jnp.bfloat16).dtype == jnp.bfloat16
