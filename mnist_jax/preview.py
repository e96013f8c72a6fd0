"""A picture of what augmentation does: originals beside random draws."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from mnist_jax.augment import MNIST_SHAPE, AugmentConfig, augment_batch
from mnist_jax.errors import MnistJaxError

Array = jax.Array

_augment = jax.jit(augment_batch, static_argnames="config")


def augmented_draws(
    images: np.ndarray, key: Array, config: AugmentConfig, draws: int
) -> np.ndarray:
    """Returns ``(n, 1 + draws, 28, 28)`` floats in [0, 1]: originals, then draws.

    images: uint8 ``(n, 784)`` or ``(n, 28, 28)``. Draw ``j`` augments the
    whole batch with ``jax.random.fold_in(key, j)``.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.size != len(images) * 784 or not len(images):
        raise MnistJaxError(
            f"preview needs uint8 images (n, 784) with n >= 1, got "
            f"{images.dtype} {images.shape}"
        )
    if draws < 1:
        raise MnistJaxError(f"--draws must be at least 1, got {draws}")

    originals = images.reshape(-1, *MNIST_SHAPE).astype(np.float32) / 255.0
    columns = [originals]
    for j in range(draws):
        draw = _augment(jax.random.fold_in(key, j), originals, config)
        columns.append(np.asarray(draw))
    return np.stack(columns, axis=1)


def preview_grid(
    images: np.ndarray,
    key: Array,
    config: AugmentConfig,
    draws: int,
    path: str | Path,
) -> Path:
    """Writes a PNG grid, one row per image: the original, then ``draws`` draws.

    Returns the path written. Needs matplotlib (the ``plot`` extra).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise MnistJaxError(
            'the preview needs matplotlib: pip install "mnist-jax[plot]"'
        ) from err
    path = Path(path)
    if path.is_dir():
        raise MnistJaxError(f"cannot write {path}: it is a folder; name a .png file")
    if not path.parent.is_dir():
        raise MnistJaxError(f"cannot write {path}: folder {path.parent} does not exist")

    grid = augmented_draws(images, key, config, draws)
    n, cols = grid.shape[:2]
    fig = Figure(figsize=(0.9 * cols, 0.9 * n + 0.3), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(n, cols, squeeze=False)
    for (row, col), ax in np.ndenumerate(axes):
        ax.imshow(grid[row, col], cmap="gray", vmin=0.0, vmax=1.0)
        ax.set_xticks([])
        ax.set_yticks([])
        if row == 0:
            ax.set_title("original" if col == 0 else f"draw {col}", fontsize=8)
    for ax in axes[:, 0]:
        for spine in ax.spines.values():
            spine.set_color("tab:orange")
            spine.set_linewidth(2)
    fig.savefig(path, dpi=100)
    return path
