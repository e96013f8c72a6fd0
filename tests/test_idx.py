"""IDX folders: the accepted file names, and the error for each bad file."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from data_files import digits, idx_images, idx_labels, write_idx_folder

from mnist_jax.data import load, load_eval
from mnist_jax.errors import MnistJaxError


@pytest.fixture
def folder(tmp_path):
    """Returns a gzip IDX folder: 5 train and 3 test digits."""
    return write_idx_folder(tmp_path / "idx", digits(5, seed=1), digits(3, seed=2))


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("dotted", [False, True])
def test_folder_loads_train_and_test_under_any_usual_name(tmp_path, gz, dotted):
    train, test = digits(5, seed=1), digits(3, seed=2)
    folder = write_idx_folder(tmp_path, train, test, gz=gz, dotted=dotted)

    parts = load(str(folder))

    assert sorted(parts) == ["test", "train"]
    np.testing.assert_array_equal(parts["train"].images, train[0])
    np.testing.assert_array_equal(parts["train"].labels, train[1])
    np.testing.assert_array_equal(parts["test"].images, test[0])
    assert parts["test"].labels.dtype == np.int32
    assert parts["test"].source == f"{folder} (test)"


def test_load_eval_needs_only_the_test_files(tmp_path):
    test = digits(3, seed=2)
    folder = write_idx_folder(tmp_path, test=test)

    np.testing.assert_array_equal(load_eval(str(folder)).labels, test[1])


def test_missing_files_are_all_named(tmp_path):
    folder = write_idx_folder(tmp_path, train=digits(2))
    (folder / "train-labels-idx1-ubyte.gz").unlink()

    with pytest.raises(
        MnistJaxError,
        match=r"is missing train-labels-idx1-ubyte\.gz, t10k-images-idx3-ubyte\.gz, "
        r"t10k-labels-idx1-ubyte\.gz \(gzip or plain\)",
    ):
        load(str(folder))


def test_wrong_magic_number_is_named(folder):
    # A label file where the images should be.
    target = folder / "t10k-images-idx3-ubyte.gz"
    target.write_bytes(gzip.compress(idx_labels(np.zeros(3))))

    with pytest.raises(
        MnistJaxError,
        match=r"t10k-images-idx3-ubyte\.gz starts with magic number 2049 "
        r"\(0x00000801\), not 2051",
    ):
        load(str(folder))


def test_truncated_images_name_promised_and_found_bytes(folder):
    data = idx_images(digits(3)[0])[:-100]
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(data))

    with pytest.raises(
        MnistJaxError,
        match=r"is truncated: its header promises 3 images \(2352 bytes\) but only "
        r"2252 bytes follow",
    ):
        load(str(folder))


def test_truncated_header_is_reported(folder):
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_labels([])[:6])
    )

    with pytest.raises(
        MnistJaxError, match=r"train-labels-idx1-ubyte\.gz is truncated"
    ):
        load(str(folder))


def test_extra_bytes_are_reported(folder):
    data = idx_labels(np.zeros(3)) + b"\x00\x00"
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(data))

    with pytest.raises(MnistJaxError, match=r"has 2 bytes more than the 3 labels"):
        load(str(folder))


def test_image_and_label_counts_that_differ_are_named(folder):
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_labels(np.zeros(2)))
    )

    with pytest.raises(
        MnistJaxError,
        match=r"t10k-images-idx3-ubyte\.gz has 3 images but "
        r".*t10k-labels-idx1-ubyte\.gz has 2 labels",
    ):
        load(str(folder))


def test_label_above_9_is_named(folder):
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_labels(np.array([1, 12, 3])))
    )

    with pytest.raises(MnistJaxError, match=r"label 12 at index 1 is outside 0\.\.9"):
        load(str(folder))


def test_images_that_are_not_28_by_28_are_refused(folder):
    header = b"".join(v.to_bytes(4, "big") for v in (2051, 1, 32, 32))
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(header + bytes(1024))
    )

    with pytest.raises(MnistJaxError, match=r"holds 32x32 images"):
        load(str(folder))


def test_gz_file_that_is_not_gzip_is_named(folder):
    (folder / "train-images-idx3-ubyte.gz").write_bytes(idx_images(digits(5)[0]))

    with pytest.raises(
        MnistJaxError,
        match=r"train-images-idx3-ubyte\.gz is named \.gz but is not a gzip",
    ):
        load(str(folder))


def test_damaged_gzip_is_named(folder):
    target = folder / "train-images-idx3-ubyte.gz"
    target.write_bytes(target.read_bytes()[:-20])

    with pytest.raises(
        MnistJaxError, match=r"train-images-idx3-ubyte\.gz is a damaged gzip file"
    ):
        load(str(folder))
