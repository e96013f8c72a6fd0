"""MNIST's IDX files: big-endian headers, then unsigned bytes.

An image file is the magic number 2051 (``0x00000803``), the count ``N``,
28 and 28, each a big-endian uint32, then ``N * 28 * 28`` pixels, image
after image, row-major. A label file is 2049 (``0x00000801``) and ``N``,
then ``N`` labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mnist_jax.errors import MnistJaxError
from mnist_jax.files import read_bytes

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
SIDE = 28

# Official names first; ``.gz`` or not, hyphen or the dot of the gzip's stored name.
_NAMES = {
    ("train", "images"): ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    ("train", "labels"): ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    ("test", "images"): ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    ("test", "labels"): ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


def official_name(split: str, kind: str) -> str:
    """Returns the file name a mirror serves, e.g. ``t10k-labels-idx1-ubyte.gz``."""
    return _NAMES[split, kind][0] + ".gz"


def find_file(directory: Path, split: str, kind: str) -> Path | None:
    """Returns the IDX file for ``split`` and ``kind`` in ``directory``, if any.

    split: ``"train"`` or ``"test"``; kind: ``"images"`` or ``"labels"``.
    """
    for stem in _NAMES[split, kind]:
        for name in (stem + ".gz", stem):
            if (directory / name).is_file():
                return directory / name
    return None


def read_images(path: Path) -> np.ndarray:
    """Returns the images of an IDX3 file as ``(N, 784)`` uint8."""
    data = read_bytes(path)
    _check_magic(data, IMAGES_MAGIC, "image", path)
    _check_length(data, 16, path, "an image file's header")
    count, rows, cols = (_uint32(data, i) for i in (4, 8, 12))
    if (rows, cols) != (SIDE, SIDE):
        raise MnistJaxError(
            f"{path} holds {rows}x{cols} images; mnist-jax reads 28x28 images only"
        )
    pixels = _payload(data, 16, count * SIDE * SIDE, path, f"{count} images")
    return pixels.reshape(count, SIDE * SIDE)


def read_labels(path: Path) -> np.ndarray:
    """Returns the labels of an IDX1 file as ``(N,)`` int32, each in 0..9."""
    data = read_bytes(path)
    _check_magic(data, LABELS_MAGIC, "label", path)
    _check_length(data, 8, path, "a label file's header")
    count = _uint32(data, 4)
    labels = _payload(data, 8, count, path, f"{count} labels").astype(np.int32)

    bad = np.flatnonzero(labels > 9)
    if bad.size:
        i = int(bad[0])
        raise MnistJaxError(
            f"{path}: label {labels[i]} at index {i} is outside 0..9; "
            "is this an MNIST label file?"
        )
    return labels


def _uint32(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 4], "big")


def _check_length(data: bytes, needed: int, path: Path, what: str) -> None:
    if len(data) < needed:
        raise MnistJaxError(
            f"{path} is truncated: it has {len(data)} bytes, fewer than the "
            f"{needed} of {what}; download it again"
        )


def _check_magic(data: bytes, expected: int, kind: str, path: Path) -> None:
    _check_length(data, 4, path, "a magic number")
    magic = _uint32(data, 0)
    if magic != expected:
        raise MnistJaxError(
            f"{path} starts with magic number {magic} (0x{magic:08x}), "
            f"not {expected} (0x{expected:08x}) of an IDX {kind} file; "
            f"check that it is the {kind} file"
        )


def _payload(data: bytes, start: int, size: int, path: Path, what: str) -> np.ndarray:
    """Returns ``size`` bytes after the header as a writable uint8 array."""
    found = len(data) - start
    if found < size:
        raise MnistJaxError(
            f"{path} is truncated: its header promises {what} ({size} bytes) "
            f"but only {found} bytes follow; download it again"
        )
    if found > size:
        raise MnistJaxError(
            f"{path} has {found - size} bytes more than the {what} its header "
            "promises; download it again"
        )
    return np.frombuffer(data, np.uint8, size, start).copy()
