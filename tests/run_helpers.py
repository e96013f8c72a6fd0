"""Tiny runs for the command-line tests: a separable CSV and the flags to train it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mnist_jax.data import Dataset, write_csv


def blobs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Returns n separable fake digits: class c lights up pixels 70c..70c+69."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.int32)
    images = rng.integers(0, 40, (n, 784)).astype(np.uint8)
    for i, c in enumerate(labels):
        images[i, 70 * c : 70 * c + 70] = 255
    return images, labels


def blobs_csv(path: Path, n: int = 200, seed: int = 0) -> Path:
    """Writes ``blobs(n)`` as a Kaggle CSV and returns its path."""
    write_csv(path, Dataset(*blobs(n, seed), "blobs"))
    return path


def tiny_flags(csv: Path, *extra: str) -> list[str]:
    """Returns ``train`` flags for a seconds-long run on ``csv`` (40 rows held out)."""
    return [
        "train",
        "--data",
        str(csv),
        "--dev-size",
        "40",
        "--sizes",
        "784,16,10",
        "--batch-size",
        "16",
        "--no-augment",
        "--no-progress",
        *extra,
    ]
