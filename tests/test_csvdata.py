"""Kaggle CSV files: what loads, and the one-sentence error for each bad input."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest
from data_files import (
    HEADER,
    PIXEL_HEADER,
    digits,
    idx_images,
    kaggle_rows,
    write_csv_lines,
)

from mnist_jax.data import load, load_eval
from mnist_jax.errors import MnistJaxError


@pytest.fixture
def good(tmp_path):
    """Returns a valid 3-row Kaggle CSV and the images and labels in it."""
    images, labels = digits(3)
    path = write_csv_lines(
        tmp_path / "train.csv", [HEADER, *kaggle_rows(images, labels)]
    )
    return path, images, labels


def bad_csv(tmp_path, row: list, at: int = 1, header: str = HEADER):
    """Writes 3 good rows, then replaces data row ``at`` (1-based) by ``row``."""
    images, labels = digits(3)
    lines = kaggle_rows(images, labels)
    lines[at - 1] = ",".join(map(str, row))
    return write_csv_lines(tmp_path / "bad.csv", [header, *lines])


def row_with(column: int, value) -> list:
    """Returns a 785-value row, all zeros but ``value`` at ``column`` (0 = label)."""
    row: list = [0] * 785
    row[column] = value
    return row


def test_kaggle_csv_loads_as_uint8_images_and_int32_labels(good):
    path, images, labels = good

    train = load(str(path))["train"]

    assert list(load(str(path))) == ["train"]
    assert train.images.dtype == np.uint8 and train.images.shape == (3, 784)
    assert train.labels.dtype == np.int32
    np.testing.assert_array_equal(train.images, images)
    np.testing.assert_array_equal(train.labels, labels)
    assert train.source == str(path)


def test_crlf_line_ends_a_byte_order_mark_and_trailing_blank_lines_load(tmp_path):
    images, labels = digits(2)
    text = "\ufeff" + "\r\n".join([HEADER, *kaggle_rows(images, labels)]) + "\r\n\r\n"
    (tmp_path / "win.csv").write_text(text, newline="")

    train = load(str(tmp_path / "win.csv"))["train"]

    np.testing.assert_array_equal(train.images, images)


def test_gzip_csv_loads(tmp_path, good):
    path, images, _ = good
    (tmp_path / "train.csv.gz").write_bytes(gzip.compress(path.read_bytes()))

    np.testing.assert_array_equal(
        load(str(tmp_path / "train.csv.gz"))["train"].images, images
    )


def test_whole_number_floats_are_accepted(tmp_path):
    path = bad_csv(tmp_path, row_with(5, "7.0"))

    assert load(str(path))["train"].images[0, 4] == 7


def test_unlabelled_csv_loads_only_without_required_labels(tmp_path):
    images, _ = digits(2)
    path = write_csv_lines(
        tmp_path / "test.csv", [PIXEL_HEADER, *kaggle_rows(images, None)]
    )

    test = load_eval(str(path), require_labels=False)

    assert test.labels is None
    np.testing.assert_array_equal(test.images, images)
    with pytest.raises(MnistJaxError, match=r"test\.csv has no label column"):
        load_eval(str(path))


def test_wrong_column_count_names_the_count(tmp_path):
    path = write_csv_lines(tmp_path / "narrow.csv", ["label,pixel0,pixel1", "1,2,3"])

    with pytest.raises(MnistJaxError, match=r"narrow\.csv has 3 columns in its header"):
        load(str(path))


def test_pandas_index_column_is_named_as_extra(tmp_path):
    images, labels = digits(2)
    frame = pd.DataFrame(images, columns=PIXEL_HEADER.split(","))
    frame.insert(0, "label", labels)
    frame.to_csv(tmp_path / "indexed.csv")  # index=True: a leading unnamed column

    with pytest.raises(
        MnistJaxError, match=r"indexed\.csv has an extra first column '' before 'label'"
    ):
        load(str(tmp_path / "indexed.csv"))


def test_misnamed_header_column_is_named(tmp_path):
    path = bad_csv(tmp_path, row_with(0, 0), header=HEADER.replace("pixel7,", "pixl7,"))

    with pytest.raises(
        MnistJaxError, match=r"header column 9 is 'pixl7', expected 'pixel7'"
    ):
        load(str(path))


def test_missing_header_is_reported(tmp_path):
    images, labels = digits(2)
    path = write_csv_lines(tmp_path / "bare.csv", kaggle_rows(images, labels))

    with pytest.raises(MnistJaxError, match=r"bare\.csv has no header line"):
        load(str(path))


def test_non_numeric_cell_names_row_line_and_column(tmp_path):
    path = bad_csv(tmp_path, row_with(6, "abc"), at=2)

    with pytest.raises(
        MnistJaxError,
        match=r"bad\.csv data row 2 \(file line 3\), column 'pixel5' is 'abc', "
        r"not an integer",
    ):
        load(str(path))


def test_fractional_cell_is_not_an_integer(tmp_path):
    path = bad_csv(tmp_path, row_with(1, 0.5))

    with pytest.raises(
        MnistJaxError, match=r"column 'pixel0' is '0.5', not an integer"
    ):
        load(str(path))


def test_empty_cell_names_row_line_and_column(tmp_path):
    path = bad_csv(tmp_path, row_with(3, ""), at=3)

    with pytest.raises(
        MnistJaxError,
        match=r"data row 3 \(file line 4\), column 'pixel2' is empty or missing",
    ):
        load(str(path))


def test_short_row_is_reported_as_missing_cells(tmp_path):
    path = bad_csv(tmp_path, [0] * 780)

    with pytest.raises(
        MnistJaxError, match=r"data row 1 .* 'pixel779' is empty or missing"
    ):
        load(str(path))


@pytest.mark.parametrize("at", [1, 2])
def test_long_row_is_reported_with_its_value_count(tmp_path, at):
    path = bad_csv(tmp_path, [0] * 786, at=at)

    with pytest.raises(
        MnistJaxError, match=rf"data row {at} \(file line {at + 1}\) has .*values"
    ):
        load(str(path))


@pytest.mark.parametrize("value", [256, -1, 100000])
def test_pixel_outside_0_255_is_named(tmp_path, value):
    path = bad_csv(tmp_path, row_with(4, value), at=2)

    with pytest.raises(
        MnistJaxError,
        match=rf"data row 2 \(file line 3\), column 'pixel3' is {value}; "
        r"pixels must be 0-255",
    ):
        load(str(path))


@pytest.mark.parametrize("value", [10, -1])
def test_label_outside_0_9_is_named(tmp_path, value):
    path = bad_csv(tmp_path, row_with(0, value), at=3)

    with pytest.raises(
        MnistJaxError,
        match=rf"data row 3 \(file line 4\), column 'label' is {value}; "
        r"labels must be 0-9",
    ):
        load(str(path))


def test_empty_file_is_reported(tmp_path):
    (tmp_path / "empty.csv").write_bytes(b"")

    with pytest.raises(MnistJaxError, match=r"empty\.csv is empty"):
        load(str(tmp_path / "empty.csv"))


def test_header_only_file_is_reported(tmp_path):
    path = write_csv_lines(tmp_path / "head.csv", [HEADER])

    with pytest.raises(MnistJaxError, match=r"head\.csv has a header but no data rows"):
        load(str(path))


def test_binary_file_is_not_a_text_csv(tmp_path):
    (tmp_path / "noise.csv").write_bytes(bytes(range(128, 256)) * 4)

    with pytest.raises(MnistJaxError, match=r"noise\.csv is not a text CSV file"):
        load(str(tmp_path / "noise.csv"))


def test_gz_name_on_a_plain_file_is_reported(tmp_path, good):
    path, _, _ = good
    (tmp_path / "train.csv.gz").write_bytes(path.read_bytes())

    with pytest.raises(MnistJaxError, match=r"train\.csv\.gz is named \.gz but is not"):
        load(str(tmp_path / "train.csv.gz"))


def test_cut_off_gzip_is_reported_as_damaged(tmp_path, good):
    path, _, _ = good
    packed = gzip.compress(path.read_bytes())
    (tmp_path / "cut.csv.gz").write_bytes(packed[: len(packed) // 2])

    with pytest.raises(MnistJaxError, match=r"cut\.csv\.gz is a damaged gzip file"):
        load(str(tmp_path / "cut.csv.gz"))


def test_idx_file_given_as_csv_points_to_the_folder(tmp_path):
    (tmp_path / "images.idx").write_bytes(idx_images(digits(1)[0]))

    with pytest.raises(MnistJaxError, match=r"is an IDX file.*give the folder"):
        load(str(tmp_path / "images.idx"))


def test_errors_are_one_line(tmp_path):
    path = bad_csv(tmp_path, row_with(6, "abc"))

    with pytest.raises(MnistJaxError) as caught:
        load(str(path))

    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("word", ["True", "false"])
def test_a_column_of_true_or_false_is_not_read_as_ones_and_zeros(tmp_path, word):
    # Found by fuzzing: pandas parses a column of True/False as booleans,
    # which used to load as labels 1 and 0.
    images, _ = digits(2)
    lines = [f"{word}," + row for row in kaggle_rows(images, None)]
    path = write_csv_lines(tmp_path / "bools.csv", [HEADER, *lines])

    with pytest.raises(
        MnistJaxError, match=rf"column 'label' is '{word.title()}', not an integer"
    ):
        load(str(path))
