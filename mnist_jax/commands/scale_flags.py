"""The scaling flags of ``train``: several processes, many models at once.

Not a subcommand: ``train`` adds them with ``add_scale_args``. Data
parallelism over the local devices needs no flag; it is on whenever JAX
sees more than one device.
"""

from __future__ import annotations

import argparse

from mnist_jax.ensemble import Member, grid
from mnist_jax.errors import MnistJaxError


def _lrs(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of numbers, e.g. 1e-3,3e-3"
        ) from None


def add_scale_args(parser: argparse.ArgumentParser) -> None:
    """Adds the multi-process flags and ``--seeds``/``--lrs``."""
    hosts = parser.add_argument_group(
        "multi-process (start the same command once per process)"
    )
    hosts.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        default=None,
        help="address of process 0, which serves the rendezvous there "
        "(default: $JAX_COORDINATOR_ADDRESS or cluster auto-detection)",
    )
    hosts.add_argument(
        "--num-processes", type=int, default=None, metavar="N", help="processes"
    )
    hosts.add_argument(
        "--process-id", type=int, default=None, metavar="I", help="0..N-1"
    )
    hosts.add_argument(
        "--distributed",
        action="store_true",
        help="join a multi-process run even without the three flags above, "
        "letting JAX detect Slurm, Open MPI, Kubernetes or Cloud TPU",
    )

    many = parser.add_argument_group("many models at once (one process)")
    many.add_argument(
        "--seeds",
        type=int,
        default=None,
        metavar="K",
        help="train K models with seeds --seed, --seed+1, ... in one program",
    )
    many.add_argument(
        "--lrs",
        type=_lrs,
        default=None,
        metavar="LR,LR,...",
        help="also train each seed at each of these initial learning rates "
        "(replaces --lr)",
    )


def wants_processes(args: argparse.Namespace) -> bool:
    """Returns True when the flags ask to join a multi-process run."""
    flags = (args.coordinator, args.num_processes, args.process_id)
    return args.distributed or any(v is not None for v in flags)


def join_processes(args: argparse.Namespace) -> None:
    """Calls ``jax.distributed.initialize`` when asked; do it before other JAX use."""
    if not wants_processes(args):
        return
    if args.seeds is not None or args.lrs is not None:
        raise MnistJaxError(
            "--seeds and --lrs train in one process; drop the multi-process flags"
        )
    from mnist_jax import parallel

    parallel.initialize(args.coordinator, args.num_processes, args.process_id)


def members_from_args(args: argparse.Namespace, lr: float) -> list[Member] | None:
    """Returns the models ``--seeds``/``--lrs`` ask for, or None for one model."""
    if args.seeds is None and args.lrs is None:
        return None
    if args.seeds is not None and args.seeds < 1:
        raise MnistJaxError(f"--seeds must be 1 or more, got {args.seeds}")
    if args.resume:
        raise MnistJaxError("--resume continues one model; drop --seeds and --lrs")
    seeds = range(args.seed, args.seed + (args.seeds or 1))
    return grid(seeds, args.lrs or (lr,))
