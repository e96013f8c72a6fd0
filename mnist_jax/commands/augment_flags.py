"""The augmentation flags, shared by every command that augments images.

Not a subcommand: ``train`` and ``augment-preview`` call ``add_augment_args``
on their own parsers and turn the parsed flags into an ``AugmentConfig``.
"""

from __future__ import annotations

import argparse

from mnist_jax.augment import AugmentConfig

DEFAULTS = AugmentConfig()


def add_augment_args(parser: argparse.ArgumentParser) -> None:
    """Adds ``--augment/--no-augment --rotate --shift --zoom --elastic``."""
    group = parser.add_argument_group("augmentation (training images only)")
    group.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="randomly rotate, shift and zoom each training image (default: on)",
    )
    group.add_argument(
        "--rotate",
        type=float,
        default=DEFAULTS.rotate,
        metavar="DEG",
        help="rotate by an angle drawn from [-DEG, DEG] (default: %(default)s)",
    )
    group.add_argument(
        "--shift",
        type=float,
        default=DEFAULTS.shift,
        metavar="PX",
        help="shift each axis by [-PX, PX] pixels (default: %(default)s)",
    )
    group.add_argument(
        "--zoom",
        type=float,
        nargs=2,
        default=list(DEFAULTS.zoom),
        metavar=("LO", "HI"),
        help="scale about the centre by a factor in [LO, HI] (default: 0.9 1.1)",
    )
    group.add_argument(
        "--elastic",
        type=float,
        nargs=2,
        default=None,
        metavar=("ALPHA", "SIGMA"),
        help="add elastic distortion of strength ALPHA, smoothness SIGMA "
        "pixels, e.g. 34 4 (default: off)",
    )


def config_from_args(args: argparse.Namespace) -> AugmentConfig | None:
    """Returns the ``AugmentConfig`` the flags describe, or ``None`` for --no-augment.

    Raises ``MnistJaxError`` naming the flag when a range is impossible.
    """
    if not args.augment:
        return None
    elastic = None if args.elastic is None else tuple(args.elastic)
    return AugmentConfig(
        rotate=args.rotate,
        shift=args.shift,
        zoom=tuple(args.zoom),
        elastic=elastic,
    )
