"""The ``mnist-jax`` command line: a thin layer over the library.

Each subcommand lives in its own module under ``mnist_jax.commands`` and
exposes ``register(subparsers)``, which adds its parser and sets
``func(args) -> int``. Errors the user can fix (``MnistJaxError``) print one
line and exit with status 2, without a traceback; Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys

from mnist_jax.errors import MnistJaxError

COMMANDS = (
    "train",
    "evaluate",
    "predict",
    "gradcheck",
    "augment-preview",
    "plot",
    "bench",
)


def build_parser() -> argparse.ArgumentParser:
    """Returns the top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="mnist-jax",
        description="Train, check and use a from-scratch JAX MLP on MNIST digits.",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log debug messages"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMANDS:
        module = importlib.import_module(f"mnist_jax.commands.{name.replace('-', '_')}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    from mnist_jax.signals import interrupts_noted

    # While JAX, NumPy and pandas load, a signal is only noted: raised inside
    # jaxlib's native start-up, a KeyboardInterrupt aborted the process.
    with interrupts_noted(raising=False) as early:
        parser = build_parser()
    if early():
        print("mnist-jax: interrupted", file=sys.stderr)
        return 130
    with interrupts_noted() as noted:
        status = _run(parser, argv, noted)
    if noted() and status == 0:
        # The signal was raised where Python drops exceptions (see signals.py).
        print("mnist-jax: interrupted", file=sys.stderr)
        return 130
    return status


def _run(parser: argparse.ArgumentParser, argv: list[str] | None, noted) -> int:
    try:
        args = parser.parse_args(argv)
    except KeyboardInterrupt:
        print("mnist-jax: interrupted", file=sys.stderr)
        return 130
    args.interrupted = noted
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if args.verbose:  # our own debug lines, not matplotlib's or JAX's
        logging.getLogger("mnist_jax").setLevel(logging.DEBUG)
    name = f"mnist-jax {args.command}"
    try:
        return int(args.func(args) or 0)
    except MnistJaxError as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, as cat does, with
        # stdout pointed at /dev/null so that the exit's flush cannot fail.
        with contextlib.suppress(OSError, ValueError):  # stdout without a file
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        print(f"{name}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if args.verbose:
            raise
        print(f"{name}: error: {_describe(err)}", file=sys.stderr)
        return 1


def _describe(err: Exception) -> str:
    """Returns one line for an error no check foresaw."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    if "RESOURCE_EXHAUSTED" in str(err) or "Out of memory" in str(err):
        return f"out of memory ({text}); try a smaller --batch-size or --sizes"
    return (
        f"unexpected {type(err).__name__}: {text} "
        "(run mnist-jax --verbose ... for the traceback)"
    )


if __name__ == "__main__":
    sys.exit(main())
