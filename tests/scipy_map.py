"""The augmentation's map through SciPy, the reference for both samplers."""

from __future__ import annotations

import numpy as np
import scipy.ndimage


def scipy_warp(image: np.ndarray, a, b, dy, dx) -> np.ndarray:
    """Returns ``image`` ``(h, w)`` resampled by ``scipy.ndimage.affine_transform``.

    In float64, bilinear, 0 outside (``grid-constant``): output pixel ``o``
    reads the input at ``c + [[a, b], [-b, a]] (o - c - (dy, dx))`` about the
    centre ``c``, with ``a = cos θ / s`` and ``b = sin θ / s``.
    """
    centre = (np.array(image.shape) - 1) / 2
    matrix = np.array([[a, b], [-b, a]], np.float64)
    offset = centre - matrix @ (centre + np.array([dy, dx]))
    return scipy.ndimage.affine_transform(
        image.astype(np.float64), matrix, offset, order=1, mode="grid-constant"
    )
