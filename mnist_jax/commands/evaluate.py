"""``mnist-jax evaluate``: accuracy, per-class accuracy and confusion matrix."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mnist_jax.checkpoint import load_params
from mnist_jax.commands.train import add_data_args
from mnist_jax.data import Dataset, load_eval
from mnist_jax.errors import MnistJaxError
from mnist_jax.evaluate import evaluate
from mnist_jax.run import CONFIG_FILE, ENSEMBLE_FILE, read_run_config


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate a checkpoint on labelled data",
        description="Print accuracy, per-class accuracy and the confusion matrix "
        "of a checkpoint on labelled data (the test split of IDX data or a "
        "named set, or every row of a CSV). Without --data, a run folder is "
        "evaluated on its own evaluation split (the test split, or the dev "
        "digits it held out).",
    )
    p.add_argument(
        "--checkpoint", required=True, help="a run folder or its checkpoint.npz"
    )
    add_data_args(p)
    p.set_defaults(data=None)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def run_eval_split(checkpoint: str, seed: int) -> Dataset:
    """Returns the evaluation split that the run in ``checkpoint`` used.

    A model folder of a many-model run (``model-<m>``) has no config of its
    own; its parent's ``ensemble.json`` names the data, and every model was
    evaluated on the split held out with the first model's seed.
    """
    folder = Path(checkpoint)
    folder = folder if folder.is_dir() else folder.parent
    if (folder / CONFIG_FILE).exists():
        _, spec = read_run_config(folder)
        return spec.load(seed).eval
    if (folder.parent / ENSEMBLE_FILE).exists():
        from mnist_jax.ensemble_run import read_eval_data

        spec, first_seed = read_eval_data(folder.parent)
        return spec.load(first_seed).eval
    raise MnistJaxError(
        f"{folder} holds no {CONFIG_FILE} to find the run's data; pass --data"
    )


def run(args: argparse.Namespace) -> int:
    params, config = load_params(args.checkpoint)
    if args.data is None:
        dataset = run_eval_split(args.checkpoint, config.seed)
    else:
        dataset = load_eval(args.data, cache_dir=args.cache_dir, require_labels=True)
    report = evaluate(params, dataset.images, dataset.labels)
    if args.json:
        print(json.dumps({"data": dataset.source, **report.to_dict()}))
    else:
        print(f"data {dataset.source}")
        print(report.to_text())
    return 0
