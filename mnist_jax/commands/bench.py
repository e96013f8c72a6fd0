"""``mnist-jax bench``: the benchmark of a source checkout (``benchmarks/``).

The measuring core is ``mnist_jax.bench``; the run, its peers (PyTorch,
NumPy, SciPy) and the report live in the top-level ``benchmarks/`` folder,
which is not installed with the package. This command finds that folder in
the current directory or beside the package and hands over to it, so
``mnist-jax bench`` and ``python -m benchmarks`` take the same flags.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from mnist_jax.errors import MnistJaxError

PLANS = ("full", "quick", "tiny")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the benchmark's flags (shared with ``python -m benchmarks``)."""
    parser.add_argument(
        "--quick",
        action="store_const",
        const="quick",
        dest="plan",
        help="fewer steps and repeats: about a minute on two cores",
    )
    parser.add_argument(
        "--plan",
        choices=PLANS,
        help="how much to measure (default: full; tiny is for the tests)",
    )
    parser.set_defaults(plan="full")
    parser.add_argument("--json", type=Path, help="also write the report as JSON")
    parser.add_argument(
        "--no-torch", action="store_true", help="leave out the PyTorch peer"
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        help="PyTorch intra-op threads (default: the CPU count)",
    )
    parser.add_argument(
        "--data",
        default="synthetic",
        help="training images: 'synthetic' noise (default) or any --data of "
        "'mnist-jax train', e.g. an MNIST IDX folder",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress lines on stderr"
    )


def register(subparsers) -> None:
    """Adds the ``bench`` parser."""
    parser = subparsers.add_parser(
        "bench",
        help="measure training, inference and augmentation speed against peers",
        description="Runs benchmarks/ from a source checkout: throughput of the "
        "jitted training step at several batch sizes with and without "
        "augmentation, an epoch, inference, augmentation, compile time and "
        "memory, beside PyTorch, NumPy and SciPy peers. Prints a Markdown table.",
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def find_benchmarks(roots: Sequence[Path] | None = None) -> ModuleType:
    """Returns ``benchmarks.cli`` from the first of ``roots`` that has it.

    roots: folders to look in; by default the current directory, then the
    folder that holds the ``mnist_jax`` package (a source checkout). Raises
    ``MnistJaxError`` when none has ``benchmarks/cli.py``.
    """
    if roots is None:
        roots = (Path.cwd(), Path(__file__).resolve().parents[2])
    for root in roots:
        if (root / "benchmarks" / "cli.py").is_file():
            if str(root) not in sys.path:
                sys.path.insert(0, str(root))
            return importlib.import_module("benchmarks.cli")
    raise MnistJaxError(
        "mnist-jax bench needs the benchmarks/ folder of a source checkout; "
        "run it from the repository root"
    )


def run(args: argparse.Namespace) -> int:
    """Runs the benchmark with the parsed flags."""
    return find_benchmarks().run_args(args)
