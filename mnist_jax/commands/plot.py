"""``mnist-jax plot``: the PNGs of a run folder (curves, digits, confusion)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    """Adds the ``plot`` parser."""
    p = subparsers.add_parser(
        "plot",
        help="draw a run's learning curves, predictions, mistakes and confusion",
        description="Write curves.png, predictions.png, misclassified.png and "
        "confusion.png into a run folder. The evaluation data is loaded again "
        "as config.json describes it, and the parameters from checkpoint.npz.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="the --out folder of a run")
    p.add_argument(
        "--count",
        type=int,
        default=50,
        help="digits in each of the prediction grids (%(default)s)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Writes the four PNGs and prints where they are."""
    from mnist_jax.errors import MnistJaxError
    from mnist_jax.plots import plot_run

    if args.count < 1:
        raise MnistJaxError(f"--count must be at least 1, got {args.count}")
    paths = plot_run(args.run_dir, count=args.count)
    for path in paths:
        print(f"wrote {path}")
    return 0
