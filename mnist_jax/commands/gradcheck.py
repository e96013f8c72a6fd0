"""``mnist-jax gradcheck``: the manual backward pass against jax.grad.

A thin layer over ``mnist_jax.gradcheck.run_gradcheck``; exits 0 when every
error is within tolerance, 1 when one is not.
"""

from __future__ import annotations

import argparse

import jax

from mnist_jax.commands import layer_sizes
from mnist_jax.gradcheck import TOLERANCES, format_report, run_gradcheck
from mnist_jax.model import DEFAULT_SIZES, INITS


def register(subparsers) -> None:
    """Adds the ``gradcheck`` subcommand."""
    parser = subparsers.add_parser(
        "gradcheck",
        help="check the hand-written gradients against jax.grad",
        description=(
            "Compare the notebook's backward pass with jax.grad, and both with "
            "central finite differences, on a random network and a batch of "
            "random uint8 images drawn from the seed."
        ),
    )
    parser.add_argument("--dtype", choices=tuple(TOLERANCES), default="float64")
    parser.add_argument("--batch", type=int, default=64, metavar="N")
    parser.add_argument("--keep-prob", type=float, default=0.8, metavar="P")
    parser.add_argument("--seed", type=int, default=0, metavar="S")
    parser.add_argument(
        "--sizes",
        type=layer_sizes,
        default=DEFAULT_SIZES,
        help="layer widths, input first (default: %(default)s)",
    )
    parser.add_argument("--init", choices=INITS, default="he")
    parser.add_argument(
        "--directions",
        type=int,
        default=3,
        metavar="K",
        help="random finite-difference directions per leaf (default: 3)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Runs the check, prints its table; returns 0 on pass, 1 on fail."""
    was_x64 = jax.config.read("jax_enable_x64")
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    try:
        report = run_gradcheck(
            dtype=args.dtype,
            sizes=args.sizes,
            batch=args.batch,
            keep_prob=args.keep_prob,
            init=args.init,
            seed=args.seed,
            directions=args.directions,
        )
    finally:
        jax.config.update("jax_enable_x64", was_x64)
    print(format_report(report))
    return 0 if report.passed else 1
