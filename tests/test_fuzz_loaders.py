"""Fuzzing the loaders: malformed CSV and IDX bytes load correctly or fail clearly.

Every example either loads the data it holds or raises ``MnistJaxError``;
any other exception, or an example that runs past ``LIMIT_S``, fails the
test. Inputs stay small (a few rows), so the whole module runs in seconds.
"""

from __future__ import annotations

import contextlib
import gzip
import signal
import tempfile
from pathlib import Path

import numpy as np
import pytest
from data_files import HEADER, idx_images, idx_labels
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mnist_jax import csvdata, idx
from mnist_jax.data import load
from mnist_jax.errors import MnistJaxError

LIMIT_S = 10
# A CSV read costs pandas about 0.1 s whatever its size, so CSV cases are fewer.
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ_CSV = settings(FUZZ, max_examples=50)
WORK = Path(tempfile.mkdtemp(prefix="mnist-jax-fuzz-"))


class Hang(Exception):
    """An example ran longer than ``LIMIT_S``."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raises ``Hang`` in the block when it runs longer than ``seconds``."""

    def expire(signum, frame):
        raise Hang(f"the loader ran longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def attempt(read, path: Path):
    """Returns ``read(path)``, or None when it raised ``MnistJaxError``."""
    with time_limit(LIMIT_S):
        try:
            return read(path)
        except MnistJaxError as err:
            assert str(err) and "\n" not in str(err)
            return None


# A few tokens that have broken CSV readers before, beside plain numbers.
NASTY = [
    "",
    " ",
    '"',
    '"7"',
    "'7'",
    "7.0",
    "7.5",
    "-1",
    "256",
    "1e2",
    "1e400",
    "-0",
    "+3",
    "0x10",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "True",
    "false",
    "None",
    "NA",
    "18446744073709551616",
    "99999999999999999999999999",
    "\x00",
    "\t",
    "\r",
    "\n",
    ",",
    "\ufeff",
    "١",  # an Arabic-Indic digit one
]

cells = st.one_of(
    st.integers(0, 255).map(str),
    st.sampled_from(NASTY),
    st.text(max_size=4),
)


def kaggle_text(images: np.ndarray, labels: np.ndarray) -> str:
    pairs = zip(images, labels, strict=True)
    rows = [",".join(map(str, [int(y), *x])) for x, y in pairs]
    return "\n".join([HEADER, *rows]) + "\n"


@st.composite
def digit_rows(draw, max_rows: int = 3):
    """Returns 1 to ``max_rows`` random digits, with the extreme values 0, 255, 9."""
    n = draw(st.integers(1, max_rows))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    images = rng.integers(0, 256, (n, 784), dtype=np.uint8)
    images[:, draw(st.integers(0, 783))] = draw(st.sampled_from([0, 255]))
    labels = rng.integers(0, 10, n).astype(np.int32)
    labels[0] = draw(st.integers(0, 9))
    return images, labels


@st.composite
def mutated_csv(draw) -> bytes:
    """Returns a valid Kaggle CSV with cells replaced and bytes cut or inserted."""
    images, labels = draw(digit_rows())
    lines = kaggle_text(images, labels).split("\n")
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(lines) - 1))
        parts = lines[at].split(",")
        parts[draw(st.integers(0, len(parts) - 1))] = draw(cells)
        lines[at] = ",".join(parts)
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    data = newline.join(lines).encode("utf-8", "surrogatepass")
    for _ in range(draw(st.integers(0, 2))):
        cut = draw(st.integers(0, len(data)))
        data = data[:cut] + draw(st.binary(max_size=6)) + data[cut:]
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return data


def reference_cells(data: bytes) -> list[list[float]] | None:
    """Returns each data row's cells as numbers, or None if some is not a number.

    A deliberately plain reader: lines split on newline, cells on commas,
    each cell stripped of spaces and read by ``float``.
    """
    text = data.decode("utf-8-sig")
    lines = [line.rstrip("\r") for line in text.split("\n")[1:]]
    while lines and not lines[-1].strip():
        lines.pop()
    try:
        return [[float(cell) for cell in line.split(",")] for line in lines]
    except ValueError:
        return None


@FUZZ_CSV
@given(digit_rows(), st.sampled_from(["\n", "\r\n"]), st.booleans(), st.booleans())
def test_valid_kaggle_csv_loads_exactly(rows, newline, bom, packed):
    images, labels = rows
    text = kaggle_text(images, labels).replace("\n", newline)
    data = (("\ufeff" if bom else "") + text).encode()
    path = WORK / ("valid.csv.gz" if packed else "valid.csv")
    path.write_bytes(gzip.compress(data) if packed else data)

    loaded = attempt(csvdata.read_kaggle, path)

    assert loaded is not None
    np.testing.assert_array_equal(loaded[0], images)
    np.testing.assert_array_equal(loaded[1], labels)


@FUZZ_CSV
@given(mutated_csv())
@example(b"label," + HEADER.encode()[6:] + b"\n" + b"True," + b"0," * 783 + b"0\n")
def test_malformed_csv_loads_what_it_says_or_raises_the_projects_error(data):
    path = WORK / "fuzz.csv"
    path.write_bytes(data)

    loaded = attempt(csvdata.read_kaggle, path)

    if loaded is None:
        return
    images, labels = loaded
    assert images.dtype == np.uint8 and images.ndim == 2 and images.shape[1] == 784
    assert labels is not None and labels.shape == (len(images),)
    assert labels.dtype == np.int32 and ((labels >= 0) & (labels <= 9)).all()
    if b'"' not in data:
        cells = reference_cells(data)
        assert cells is not None, "a cell that is not a number was accepted"
        expected = np.column_stack([labels, images]).astype(float)
        np.testing.assert_array_equal(np.array(cells), expected)


@FUZZ_CSV
@given(st.binary(max_size=2000))
def test_random_bytes_as_csv_raise_the_projects_error(data):
    for read in (csvdata.read_kaggle, csvdata.read_label_last):
        path = WORK / "noise.csv"
        path.write_bytes(data)

        assert attempt(read, path) is None


@st.composite
def idx_bytes(draw, magic: int, item: int):
    """Returns an IDX file whose header fields and length are fuzzed."""
    count = draw(st.sampled_from([0, 1, 2, 3, 2**31 - 1, 2**32 - 1]))
    dims = [28, 28] if magic == idx.IMAGES_MAGIC else []
    fields = [magic, count, *dims]
    if draw(st.booleans()):
        at = draw(st.integers(0, len(fields) - 1))
        fields[at] = draw(st.sampled_from([0, 1, 27, 28, 2049, 2051, 2**32 - 1]))
    header = b"".join(v.to_bytes(4, "big") for v in fields)
    size = draw(st.sampled_from([0, 1, item - 1, item, 2 * item, 3 * item + 1]))
    payload = draw(st.binary(min_size=size, max_size=size))
    if draw(st.booleans()):
        header = header[: draw(st.integers(0, len(header)))]
    data = header + payload
    if draw(st.booleans()):
        data = gzip.compress(data)
        if draw(st.booleans()):
            data = data[: draw(st.integers(0, len(data)))]
    return data


def expected_payload(data: bytes, header: int) -> bytes:
    raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    return raw[header:]


@FUZZ
@given(idx_bytes(idx.IMAGES_MAGIC, 784))
def test_fuzzed_idx_images_load_their_pixels_or_raise_the_projects_error(data):
    path = WORK / "images-idx3-ubyte"
    path.write_bytes(data)

    images = attempt(idx.read_images, path)

    if images is not None:
        assert images.dtype == np.uint8 and images.shape[1:] == (784,)
        assert images.tobytes() == expected_payload(data, 16)


@FUZZ
@given(idx_bytes(idx.LABELS_MAGIC, 1))
def test_fuzzed_idx_labels_load_their_values_or_raise_the_projects_error(data):
    path = WORK / "labels-idx1-ubyte"
    path.write_bytes(data)

    labels = attempt(idx.read_labels, path)

    if labels is not None:
        assert labels.dtype == np.int32 and labels.ndim == 1
        assert ((labels >= 0) & (labels <= 9)).all()
        assert labels.astype(np.uint8).tobytes() == expected_payload(data, 8)


@FUZZ
@given(st.binary(max_size=300), st.booleans())
def test_random_bytes_as_idx_raise_the_projects_error(data, packed):
    path = WORK / "noise-idx-ubyte"
    path.write_bytes(gzip.compress(data) if packed else data)

    assert attempt(idx.read_images, path) is None or data[:4] == b"\0\0\x08\x03"
    assert attempt(idx.read_labels, path) is None or data[:4] == b"\0\0\x08\x01"


@FUZZ
@given(
    st.sampled_from(["train-images", "train-labels", "t10k-images", "t10k-labels"]),
    st.integers(0, 40),
    st.binary(min_size=1, max_size=3),
)
def test_an_idx_folder_with_one_damaged_file_raises_the_projects_error(name, at, noise):
    folder = WORK / "folder"
    folder.mkdir(exist_ok=True)
    images = np.arange(2 * 784, dtype=np.uint8).reshape(2, 784)
    files = {
        "train-images": idx_images(images),
        "train-labels": idx_labels(np.array([3, 4])),
        "t10k-images": idx_images(images[:1]),
        "t10k-labels": idx_labels(np.array([5])),
    }
    data = files[name]
    files[name] = data[:at] + noise + data[at + len(noise) :]
    for stem, content in files.items():
        code = 3 if stem.endswith("images") else 1
        (folder / f"{stem}-idx{code}-ubyte").write_bytes(content)

    parts = attempt(load, folder)

    if parts is not None:
        assert sorted(parts) == ["test", "train"]
        assert len(parts["train"]) == 2 and len(parts["test"]) == 1


def test_the_time_limit_stops_a_hanging_example():
    def hang(path):
        while True:
            pass

    with time_limit(0.2), pytest.raises(Hang):
        hang(WORK)
