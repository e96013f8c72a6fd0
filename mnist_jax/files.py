"""Data files on disk: reading them (gzip or plain) and writing them atomically."""

from __future__ import annotations

import contextlib
import gzip
import os
import secrets
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from mnist_jax.errors import MnistJaxError

GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path: str | Path) -> bytes:
    """Returns the contents of ``path``, decompressed when it is gzip.

    A file is taken as gzip by its first two bytes, whatever its name; a name
    ending in ``.gz`` on a file that is not gzip is an error, since it
    usually means a download saved an error page.
    """
    path = Path(path)
    if not path.exists():
        raise MnistJaxError(f"{path} does not exist; check the path and try again")
    if not path.is_file():
        raise MnistJaxError(f"{path} is not a file; give the path of a data file")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise MnistJaxError(f"cannot read {path}: {err.strerror or err}") from err

    if raw[:2] == GZIP_MAGIC:
        return _gunzip(raw, path)
    if path.suffix == ".gz":
        raise MnistJaxError(
            f"{path} is named .gz but is not a gzip file; "
            "download it again or remove the .gz from its name"
        )
    return raw


def _gunzip(raw: bytes, path: Path) -> bytes:
    """Returns the decompressed ``raw``; damage becomes one ``MnistJaxError``."""
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise MnistJaxError(
            f"{path} is a damaged gzip file ({err}); download it again"
        ) from err


@contextlib.contextmanager
def atomic_write(path: Path, mode: str = "wb") -> Iterator[IO]:
    """Yields a file beside ``path`` that becomes ``path`` only on success.

    The temporary file is renamed over ``path`` with ``os.replace`` when the
    block ends without an exception and deleted otherwise, so readers never
    see half a file. It is created like any new file (permissions follow the
    umask).
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    try:
        with open(tmp, mode.replace("w", "x")) as out:
            yield out
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
