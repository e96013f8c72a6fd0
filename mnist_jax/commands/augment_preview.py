"""``mnist-jax augment-preview``: a PNG of digits beside augmented draws."""

from __future__ import annotations

import argparse
from pathlib import Path

from mnist_jax.commands.augment_flags import add_augment_args, config_from_args
from mnist_jax.errors import MnistJaxError


def register(subparsers) -> None:
    """Adds the ``augment-preview`` parser."""
    parser = subparsers.add_parser(
        "augment-preview",
        help="draw a grid of digits beside random augmentations of them",
        description="Writes a PNG: one row per image, the original in the first "
        "column, then --draws random augmentations with the given flags.",
    )
    parser.add_argument(
        "--data",
        required=True,
        help="images to show: a CSV file, a folder of MNIST IDX files, or a "
        "named set (sample, mnist, fashion-mnist)",
    )
    parser.add_argument("--out", required=True, type=Path, help="PNG to write")
    parser.add_argument("--count", type=int, default=8, help="rows (default: 8)")
    parser.add_argument("--draws", type=int, default=6, help="draws (default: 6)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    add_augment_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Loads the first ``--count`` images, augments them and writes the grid."""
    import importlib

    import jax

    from mnist_jax.preview import preview_grid

    config = config_from_args(args)
    if config is None:
        raise MnistJaxError("augment-preview shows augmentation; drop --no-augment")
    for flag, value in (("--count", args.count), ("--draws", args.draws)):
        if not 1 <= value <= 100:
            raise MnistJaxError(f"{flag} must be in 1..100, got {value}")
    if not str(args.out).lower().endswith(".png"):
        raise MnistJaxError(f"--out {args.out} must name a .png file")

    data = importlib.import_module("mnist_jax.data")  # loaded only when used
    dataset = data.load_eval(args.data, require_labels=False)
    images = dataset.images[: args.count]
    path = preview_grid(images, jax.random.key(args.seed), config, args.draws, args.out)
    print(f"wrote {path} ({len(images)} images x {args.draws} draws)")
    return 0
