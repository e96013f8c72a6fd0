"""``python -m benchmarks``: parse the flags, run the plan, print the table."""

from __future__ import annotations

import argparse
import logging
import sys

from mnist_jax.commands.bench import add_arguments
from mnist_jax.errors import MnistJaxError


def build_parser() -> argparse.ArgumentParser:
    """Returns the parser of ``python -m benchmarks``."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure mnist-jax against PyTorch, NumPy and SciPy peers; "
        "print a Markdown table (see benchmarks/README.md).",
    )
    add_arguments(parser)
    return parser


def load_data(spec: str):
    """Returns ``((images, labels), source)`` of spec's training split, or
    ``(None, "synthetic")`` for noise made by the suite."""
    if spec == "synthetic":
        return None, "synthetic (uniform noise)"
    from mnist_jax.data import load_splits

    splits = load_splits(spec)
    return (splits.train.images, splits.train.labels), splits.train.source


def run_args(args: argparse.Namespace) -> int:
    """Runs the benchmark for parsed flags; prints Markdown, writes --json."""
    from benchmarks import report, suite

    if not args.quiet:
        logging.getLogger("benchmarks").setLevel(logging.INFO)
    if args.torch_threads is not None and args.torch_threads < 1:
        raise MnistJaxError(
            f"--torch-threads must be 1 or more, got {args.torch_threads}"
        )
    data, source = load_data(args.data)
    plan = suite.PLANS[args.plan]
    if data is not None and len(data[0]) < max(b * plan.steps[b] for b in plan.batches):
        raise MnistJaxError(
            f"{source} has {len(data[0])} training images, too few for the "
            f"{plan.name} plan; use --quick, more data or --data synthetic"
        )
    result = suite.run(
        plan,
        with_torch=not args.no_torch,
        torch_threads=args.torch_threads,
        data=data,
        data_source=source,
    )
    print(report.markdown(result))
    if args.json is not None:
        path = report.write_json(result, args.json)
        print(f"wrote {path}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Runs ``python -m benchmarks``; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    try:
        return run_args(args)
    except (MnistJaxError, FileNotFoundError) as err:
        print(f"python -m benchmarks: error: {err}", file=sys.stderr)
        return 2
