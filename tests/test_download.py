"""Named sets: download from a local mirror, checksums, the cache, no network."""

from __future__ import annotations

import functools
import hashlib
import re
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import closed_port

from mnist_jax import download
from mnist_jax.data import load, load_eval
from mnist_jax.download import default_cache_dir
from mnist_jax.errors import MnistJaxError

MNIST_FILES = list(download.SHA256["mnist"])


class QuietHandler(SimpleHTTPRequestHandler):
    """Serves files from ``directory`` and counts requests, without logging."""

    def log_message(self, *args):
        self.server.requests.append(self.path)


class CorruptingHandler(QuietHandler):
    """Serves each file with one byte flipped."""

    def do_GET(self):
        self.log_message()
        data = bytearray((Path(self.directory) / self.path.lstrip("/")).read_bytes())
        data[100] ^= 0xFF
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(bytes(data))


class StallingHandler(QuietHandler):
    """Answers nothing for a second."""

    def do_GET(self):
        time.sleep(1.0)


def serve(handler, directory: Path):
    """Starts a server on 127.0.0.1; returns it (``.url``, ``.requests``)."""
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(directory))
    )
    server.requests = []
    server.url = f"http://127.0.0.1:{server.server_address[1]}/"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def mirror(shared_data, monkeypatch):
    """A local mirror of ``../shared/data`` set as ``$MNIST_JAX_MIRROR``."""
    server = serve(QuietHandler, shared_data)
    monkeypatch.setenv("MNIST_JAX_MIRROR", server.url + "{name}/")
    yield server
    server.shutdown()
    server.server_close()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.shared
def test_named_set_is_downloaded_checked_and_then_read_from_the_cache(
    mirror, tmp_path, monkeypatch
):
    parts = load("mnist", cache_dir=str(tmp_path))

    folder = tmp_path / "mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted(MNIST_FILES)
    for name in MNIST_FILES:
        assert sha256(folder / name) == download.SHA256["mnist"][name]
    assert len(mirror.requests) == 4
    assert parts["train"].labels.tolist()[:10] == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert len(parts["test"]) == 10000

    monkeypatch.setenv("MNIST_JAX_MIRROR", f"http://127.0.0.1:{closed_port()}/")
    again = load_eval("mnist", cache_dir=str(tmp_path))
    np.testing.assert_array_equal(again.images, parts["test"].images)
    assert len(mirror.requests) == 4


@pytest.mark.shared
def test_load_eval_downloads_only_the_test_files(mirror, monkeypatch, tmp_path):
    monkeypatch.setenv("MNIST_JAX_CACHE", str(tmp_path))

    test = load_eval("fashion-mnist")

    assert np.bincount(test.labels).tolist() == [1000] * 10
    assert sorted(p.name for p in (tmp_path / "fashion-mnist").iterdir()) == [
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]


@pytest.mark.shared
def test_corrupted_download_names_the_file_and_leaves_nothing(
    shared_data, monkeypatch, tmp_path
):
    server = serve(CorruptingHandler, shared_data / "mnist")
    monkeypatch.setenv("MNIST_JAX_MIRROR", server.url)
    try:
        with pytest.raises(
            MnistJaxError,
            match=r"t10k-images-idx3-ubyte\.gz from http://127\.0\.0\.1:\d+/"
            r"t10k-images-idx3-ubyte\.gz does not match its published SHA-256",
        ):
            load_eval("mnist", cache_dir=str(tmp_path))
    finally:
        server.shutdown()
        server.server_close()

    assert list((tmp_path / "mnist").iterdir()) == []


@pytest.mark.shared
def test_damaged_cached_file_is_named_with_the_fix(mirror, tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not the labels")

    with pytest.raises(
        MnistJaxError,
        match=r"t10k-labels-idx1-ubyte\.gz does not match its published SHA-256 .*"
        r"delete it to download it again",
    ):
        load_eval("mnist", cache_dir=str(tmp_path))


def no_network_message(folder: Path, files) -> str:
    return (
        rf"could not download {re.escape(files[0])} for mnist \(last error: .*\); "
        rf"without a network, put {re.escape(', '.join(files))} in "
        rf"{re.escape(str(folder))}$"
    )


def test_closed_port_says_which_files_to_put_where(tmp_path):
    folder = tmp_path / "mnist"

    with pytest.raises(MnistJaxError, match=no_network_message(folder, MNIST_FILES)):
        load("mnist", cache_dir=str(tmp_path))


@pytest.mark.shared
def test_silent_mirror_times_out_with_the_same_advice(
    shared_data, monkeypatch, tmp_path
):
    server = serve(StallingHandler, shared_data / "mnist")
    monkeypatch.setenv("MNIST_JAX_MIRROR", server.url)
    monkeypatch.setattr(download, "TIMEOUT_S", 0.2)
    files = ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    try:
        with pytest.raises(
            MnistJaxError, match=no_network_message(tmp_path / "mnist", files)
        ):
            load_eval("mnist", cache_dir=str(tmp_path))
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.shared
def test_mirror_without_the_files_gives_the_same_advice(mirror, monkeypatch, tmp_path):
    monkeypatch.setenv("MNIST_JAX_MIRROR", mirror.url + "nowhere/")

    with pytest.raises(MnistJaxError, match=r"HTTP Error 404.*without a network"):
        load_eval("mnist", cache_dir=str(tmp_path))


def test_cache_dir_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MNIST_JAX_CACHE", str(tmp_path / "own"))
    assert default_cache_dir() == tmp_path / "own"

    monkeypatch.delenv("MNIST_JAX_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "mnist-jax"

    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "mnist-jax"


class EndlessHandler(QuietHandler):
    """Sends zeros for as long as the client reads."""

    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        block = bytes(1 << 20)
        try:
            while True:
                self.wfile.write(block)
        except OSError:
            pass


class LoopingHandler(QuietHandler):
    """Redirects every request to itself."""

    def do_GET(self):
        self.send_response(302)
        self.send_header("Location", self.path)
        self.end_headers()


def load_from(handler, monkeypatch, tmp_path):
    """Loads MNIST's test split from a 127.0.0.1 mirror served by ``handler``."""
    server = serve(handler, tmp_path)
    monkeypatch.setenv("MNIST_JAX_MIRROR", server.url)
    try:
        return load_eval("mnist", cache_dir=str(tmp_path / "cache"))
    finally:
        server.shutdown()
        server.server_close()


def test_an_endless_download_is_cut_off_and_leaves_nothing(monkeypatch, tmp_path):
    monkeypatch.setattr(download, "MAX_BYTES", 4 << 20)  # the check, not 64 MiB
    with pytest.raises(MnistJaxError, match="is over 4 MiB, larger than any"):
        load_from(EndlessHandler, monkeypatch, tmp_path)

    assert list((tmp_path / "cache" / "mnist").iterdir()) == []


def test_a_redirect_loop_is_one_line(monkeypatch, tmp_path, capsys):
    with pytest.raises(MnistJaxError) as err:
        load_from(LoopingHandler, monkeypatch, tmp_path)

    assert "\n" not in str(err.value) and "infinite loop" in str(err.value)
    assert capsys.readouterr().err == ""  # said once, in the error


class TricklingHandler(QuietHandler):
    """Promises a megabyte, then sends a byte every 0.2 s."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(1 << 20))
        self.end_headers()
        try:
            for _ in range(200):
                self.wfile.write(b"\0")
                self.wfile.flush()
                time.sleep(0.2)
        except OSError:
            pass


def test_a_trickling_mirror_is_given_up_after_the_deadline(monkeypatch, tmp_path):
    monkeypatch.setattr(download, "DEADLINE_S", 1.0)
    started = time.monotonic()
    with pytest.raises(MnistJaxError, match="took over 1 s; the mirror is too"):
        load_from(TricklingHandler, monkeypatch, tmp_path)

    assert time.monotonic() - started < 10
    assert list((tmp_path / "cache" / "mnist").iterdir()) == []
