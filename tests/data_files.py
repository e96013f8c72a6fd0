"""Small synthetic data files for the loader tests."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

HEADER = "label," + ",".join(f"pixel{i}" for i in range(784))
PIXEL_HEADER = HEADER.removeprefix("label,")


def digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Returns ``n`` random images ``(n, 784)`` uint8 and labels ``(n,)`` int32."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 784), dtype=np.uint8)
    return images, rng.integers(0, 10, n).astype(np.int32)


def idx_images(images: np.ndarray, count: int | None = None, magic=2051) -> bytes:
    """Returns an IDX3 file; ``count`` overrides the count in the header."""
    n = len(images) if count is None else count
    header = b"".join(v.to_bytes(4, "big") for v in (magic, n, 28, 28))
    return header + np.asarray(images, np.uint8).tobytes()


def idx_labels(labels: np.ndarray, magic=2049) -> bytes:
    """Returns an IDX1 file."""
    header = magic.to_bytes(4, "big") + len(labels).to_bytes(4, "big")
    return header + np.asarray(labels, np.uint8).tobytes()


def write_idx_folder(
    folder: Path, train=None, test=None, *, gz: bool = True, dotted: bool = False
) -> Path:
    """Writes ``train`` and ``test`` (each images, labels) as MNIST IDX files."""
    folder.mkdir(parents=True, exist_ok=True)
    sep = "." if dotted else "-"
    for split, part in (("train", train), ("t10k", test)):
        if part is None:
            continue
        for kind, code, data in (
            ("images", 3, idx_images(part[0])),
            ("labels", 1, idx_labels(part[1])),
        ):
            name = f"{split}-{kind}{sep}idx{code}-ubyte"
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
    return folder


def kaggle_rows(images: np.ndarray, labels: np.ndarray | None) -> list[str]:
    """Returns the data lines of a Kaggle CSV."""
    cells = images.astype(int).tolist()
    if labels is not None:
        cells = [[int(y), *row] for y, row in zip(labels, cells, strict=True)]
    return [",".join(map(str, row)) for row in cells]


def write_csv_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path
