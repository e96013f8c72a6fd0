"""``mnist-jax evaluate``: accuracy, per-class accuracy and confusion matrix."""

from __future__ import annotations

import argparse
import json

from mnist_jax.checkpoint import load_params
from mnist_jax.commands.train import add_data_args
from mnist_jax.data import load_eval
from mnist_jax.evaluate import evaluate


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate a checkpoint on labelled data",
        description="Print accuracy, per-class accuracy and the confusion matrix "
        "of a checkpoint on labelled data (the test split of IDX data or a "
        "named set, or every row of a CSV).",
    )
    p.add_argument(
        "--checkpoint", required=True, help="a run folder or its checkpoint.npz"
    )
    add_data_args(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    params, _ = load_params(args.checkpoint)
    dataset = load_eval(args.data, cache_dir=args.cache_dir, require_labels=True)
    report = evaluate(params, dataset.images, dataset.labels)
    if args.json:
        print(json.dumps({"data": dataset.source, **report.to_dict()}))
    else:
        print(f"data {dataset.source}")
        print(report.to_text())
    return 0
