"""Kaggle submissions: ``ImageId,Label`` rows, ImageId counted from 1."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mnist_jax.errors import MnistJaxError


def write_submission(path: str | os.PathLike, labels) -> Path:
    """Writes predicted labels ``(N,)`` in input order; returns the path."""
    path = Path(path)
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    rows = [f"{i},{label}" for i, label in enumerate(labels, start=1)]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("ImageId,Label\n" + "".join(r + "\n" for r in rows))
    except OSError as err:
        raise MnistJaxError(
            f"{path}: cannot write the submission ({err.strerror})"
        ) from None
    return path
