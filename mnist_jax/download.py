"""The named sets ``mnist`` and ``fashion-mnist``: a checked local cache.

Each set lives in ``<cache>/<name>/`` as its four official ``.gz`` files.
A missing file is fetched from the set's mirrors in order (or from
``$MNIST_JAX_MIRROR`` alone), checked against its published SHA-256, and
only then moved into place, so the cache never holds a partial or wrong
file. Files already there are checked again before every use.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from mnist_jax.errors import MnistJaxError
from mnist_jax.files import atomic_write

logger = logging.getLogger(__name__)

TIMEOUT_S = 15.0  # seconds of silence before a mirror counts as down
MIRROR_ENV = "MNIST_JAX_MIRROR"
CACHE_ENV = "MNIST_JAX_CACHE"

MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/"
        "data/fashion/",
    ),
}

SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": (
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
        ),
        "train-labels-idx1-ubyte.gz": (
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
        ),
        "t10k-images-idx3-ubyte.gz": (
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
        ),
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": (
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"
        ),
        "train-labels-idx1-ubyte.gz": (
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"
        ),
        "t10k-images-idx3-ubyte.gz": (
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"
        ),
    },
}

# The largest file of the sets is under 30 MB (Fashion-MNIST's training
# images); a download past this is not one of them and is cut off.
MAX_BYTES = 64 << 20

# A mirror that trickles bytes never trips TIMEOUT_S (silence); no file may
# take longer than this in all.
DEADLINE_S = 600.0

# What a mirror that is down, absent or too slow raises.
_NETWORK_ERRORS = (urllib.error.URLError, OSError, http.client.HTTPException)


def default_cache_dir() -> Path:
    """Returns ``$MNIST_JAX_CACHE``, else ``$XDG_CACHE_HOME/mnist-jax``, else
    ``~/.cache/mnist-jax``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "mnist-jax"


def mirrors(name: str) -> tuple[str, ...]:
    """Returns the base URLs to try for set ``name``, ``$MNIST_JAX_MIRROR`` first.

    The override replaces the list; a ``{name}`` in it becomes the set's name.
    """
    override = os.environ.get(MIRROR_ENV)
    if override:
        url = override.replace("{name}", name)
        try:
            parts = urllib.parse.urlsplit(url)
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https", "file"):
            raise MnistJaxError(
                f"${MIRROR_ENV} is {override!r}, not an http(s) or file URL; "
                "fix or unset it"
            )
        return (url,)
    return MIRRORS[name]


def fetch(name: str, files: Iterable[str], cache_dir: str | Path | None) -> Path:
    """Returns the folder that holds ``files`` of set ``name``, checked.

    Downloads what is missing; raises ``MnistJaxError`` on a checksum
    mismatch or when no mirror can be reached.
    """
    folder = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    folder = folder / name
    files = list(files)
    for file in files:
        target = folder / file
        if target.exists():
            _check_cached(target, SHA256[name][file])
        else:
            _download(name, file, folder, files)
    return folder


def _check_cached(target: Path, expected: str) -> None:
    try:
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
    except OSError as err:
        raise MnistJaxError(f"cannot read {target}: {err.strerror or err}") from err
    if digest != expected:
        raise MnistJaxError(
            f"{target} does not match its published SHA-256 ({digest[:12]}... "
            f"instead of {expected[:12]}...); delete it to download it again"
        )


def _download(name: str, file: str, folder: Path, files: list[str]) -> None:
    """Fetches ``file`` into ``folder`` from the first mirror that has it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise MnistJaxError(
            f"cannot create the cache folder {folder} ({err.strerror or err}); "
            f"set {CACHE_ENV} to a folder you can write"
        ) from err

    failures: list[Exception] = []
    for base in mirrors(name):
        url = base.rstrip("/") + "/" + file
        logger.info("downloading %s", url)
        try:
            _fetch_checked(url, folder / file, SHA256[name][file])
            return
        except _ChecksumMismatch as err:
            failures.append(err)  # said in the error, unless a later mirror works
            logger.info("%s", err)
        except _NETWORK_ERRORS as err:
            failures.append(err)
            logger.info("could not download %s: %s", url, err)

    mismatches = [e for e in failures if isinstance(e, _ChecksumMismatch)]
    if mismatches:
        raise MnistJaxError(str(mismatches[0])) from mismatches[0]
    missing = [f for f in files if not (folder / f).exists()]
    last = " ".join(str(failures[-1]).split())  # some errors span lines
    raise MnistJaxError(
        f"could not download {file} for {name} (last error: {last}); "
        f"without a network, put {', '.join(missing)} in {folder}"
    ) from failures[-1]


class _ChecksumMismatch(Exception):
    """Bytes that arrived whole but are not the published file."""


def _fetch_checked(url: str, target: Path, expected: str) -> None:
    """Streams ``url`` to a temporary file beside ``target``, checks, renames."""
    digest = hashlib.sha256()
    size = 0
    deadline = time.monotonic() + DEADLINE_S
    with atomic_write(target) as out, _open(url) as response:
        # read1 returns what has arrived, so the deadline is checked as bytes
        # trickle in (read(n) would wait for all n).
        read = getattr(response, "read1", response.read)
        while chunk := read(1 << 16):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{url} took over {DEADLINE_S:g} s; the mirror is too slow"
                )
            size += len(chunk)
            if size > MAX_BYTES:
                raise _ChecksumMismatch(
                    f"{target.name} from {url} is over {MAX_BYTES >> 20} MiB, "
                    "larger than any file of the data sets; the mirror served "
                    "a different file"
                )
            digest.update(chunk)
            out.write(chunk)
        if digest.hexdigest() != expected:
            raise _ChecksumMismatch(
                f"{target.name} from {url} does not match its published SHA-256 "
                f"({digest.hexdigest()[:12]}... instead of {expected[:12]}...); "
                "the mirror served a damaged or different file"
            )


def _open(url: str):
    request = urllib.request.Request(url, headers={"User-Agent": "mnist-jax"})
    return urllib.request.urlopen(request, timeout=TIMEOUT_S)
