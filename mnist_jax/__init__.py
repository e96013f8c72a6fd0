"""mnist-jax: a from-scratch, functional JAX MLP for MNIST digits.

The steps a research script needs, importable:

- ``load_splits`` / ``load_eval``: uint8 images ``(N, 784)`` and int32 labels;
- ``init_params``, ``forward``, ``loss_fn``, ``cross_entropy``: the model;
- ``TrainConfig``, ``fit``: training; ``train_run``: training into a folder;
- ``evaluate``, ``predict``: accuracy reports and predicted classes.

The names load on first use, so that ``import mnist_jax.cli`` (the command
line's entry point) starts without JAX or pandas and can turn a Ctrl-C
during their import into one line rather than a traceback.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mnist_jax.data import Dataset, Splits, load_eval, load_splits
    from mnist_jax.errors import MnistJaxError
    from mnist_jax.evaluate import Report, evaluate
    from mnist_jax.model import cross_entropy, forward, init_params, loss_fn
    from mnist_jax.run import DataSpec, train_run
    from mnist_jax.train import TrainConfig, TrainState, fit, predict

_HOMES = {
    "DataSpec": "run",
    "Dataset": "data",
    "MnistJaxError": "errors",
    "Report": "evaluate",
    "Splits": "data",
    "TrainConfig": "train",
    "TrainState": "train",
    "cross_entropy": "model",
    "evaluate": "evaluate",
    "fit": "train",
    "forward": "model",
    "init_params": "model",
    "load_eval": "data",
    "load_splits": "data",
    "loss_fn": "model",
    "predict": "train",
    "train_run": "run",
}

__all__ = [
    "DataSpec",
    "Dataset",
    "MnistJaxError",
    "Report",
    "Splits",
    "TrainConfig",
    "TrainState",
    "cross_entropy",
    "evaluate",
    "fit",
    "forward",
    "init_params",
    "load_eval",
    "load_splits",
    "loss_fn",
    "predict",
    "train_run",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Imports a public name from its module the first time it is asked for."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'mnist_jax' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"mnist_jax.{home}"), name)
    globals()[name] = value
    return value
