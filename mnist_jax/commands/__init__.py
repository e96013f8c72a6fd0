"""Subcommands of the ``mnist-jax`` command line, one module each."""

import argparse


def layer_sizes(text: str) -> tuple[int, ...]:
    """Returns ``(784, 100, 10)`` for ``"784,100,10"``."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        sizes = ()
    if len(sizes) < 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(
            f"expected two or more positive sizes such as 784,100,10, got {text!r}"
        )
    return sizes
