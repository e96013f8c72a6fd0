"""Peer: the notebook's augmentation, one image at a time through SciPy.

Each image is rotated (``scipy.ndimage.rotate``, ``reshape=False``), shifted
(``shift``) and zoomed (``zoom``), all bilinear with 0 outside; the zoomed
image is then cut or padded about its centre back to 28 x 28, since
``zoom`` changes the size. The ranges are ``mnist_jax``'s defaults. A peer
for the benchmark, not product code.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SIDE = 28


def fit_to_side(image: np.ndarray, side: int = SIDE) -> np.ndarray:
    """Returns ``image`` cut or zero-padded about its centre to ``(side, side)``."""
    out = np.zeros((side, side), image.dtype)
    h, w = image.shape
    # Source and target windows of the overlap, centred on each other.
    sy, ty = max((h - side) // 2, 0), max((side - h) // 2, 0)
    sx, tx = max((w - side) // 2, 0), max((side - w) // 2, 0)
    n, k = min(h, side), min(w, side)
    out[ty : ty + n, tx : tx + k] = image[sy : sy + n, sx : sx + k]
    return out


def augment_one(
    image: np.ndarray, angle: float, dy: float, dx: float, zoom: float
) -> np.ndarray:
    """Returns one ``(28, 28)`` image rotated, shifted, then zoomed."""
    out = ndimage.rotate(image, angle, reshape=False, order=1, mode="constant")
    out = ndimage.shift(out, (dy, dx), order=1, mode="constant")
    out = ndimage.zoom(out, zoom, order=1, mode="constant")
    return fit_to_side(out)


def augment_images(
    images: np.ndarray,
    rng: np.random.Generator,
    rotate: float = 15.0,
    shift: float = 2.0,
    zoom: tuple[float, float] = (0.9, 1.1),
) -> np.ndarray:
    """Returns images ``(m, 784)`` float32, each with its own random draw."""
    m = len(images)
    angles = rng.uniform(-rotate, rotate, m)
    shifts = rng.uniform(-shift, shift, (m, 2))
    zooms = rng.uniform(zoom[0], zoom[1], m)
    out = np.empty_like(images)
    for i in range(m):
        square = images[i].reshape(SIDE, SIDE)
        dy, dx = shifts[i]
        out[i] = augment_one(square, angles[i], dy, dx, zooms[i]).reshape(-1)
    return out
