"""``mnist-jax predict``: write a Kaggle submission for a CSV of images."""

from __future__ import annotations

import argparse
from pathlib import Path

from mnist_jax.checkpoint import load_params
from mnist_jax.commands.train import add_data_args
from mnist_jax.data import load_eval
from mnist_jax.errors import MnistJaxError
from mnist_jax.predict import write_submission
from mnist_jax.train import predict


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict",
        help="predict labels and write a Kaggle submission",
        description="Predict a label for every image, in input order, and write "
        "the Kaggle format: header ImageId,Label with ImageId from 1.",
    )
    p.add_argument(
        "--checkpoint", required=True, help="a run folder or its checkpoint.npz"
    )
    add_data_args(p)
    p.add_argument("--out", required=True, help="the CSV file to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.data and Path(args.out).resolve() == Path(args.data).resolve():
        raise MnistJaxError(
            f"--out {args.out} is the --data file; write the predictions elsewhere"
        )
    params, _ = load_params(args.checkpoint)
    dataset = load_eval(args.data, cache_dir=args.cache_dir, require_labels=False)
    labels = predict(params, dataset.images)
    path = write_submission(args.out, labels)
    print(f"wrote {len(labels)} predictions to {path}")
    return 0
