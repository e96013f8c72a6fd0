"""Fixtures shared by the test modules."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

# The tests compile many tiny programs, one per drawn shape; at these sizes
# XLA's LLVM optimisation costs more time than it saves.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
).strip()

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Returns ``../shared/data``: the official MNIST and Fashion-MNIST IDX files."""
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip(f"the offline MNIST files are not at {SHARED_DATA}")
    return SHARED_DATA


def closed_port() -> int:
    """Returns a local port that nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path_factory):
    """Keeps every test off the real mirrors and out of the user's cache."""
    monkeypatch.setenv("MNIST_JAX_MIRROR", f"http://127.0.0.1:{closed_port()}/")
    monkeypatch.setenv("MNIST_JAX_CACHE", str(tmp_path_factory.mktemp("cache")))
