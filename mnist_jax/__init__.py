"""mnist-jax: a from-scratch, functional JAX MLP for MNIST digits.

The steps a research script needs, importable:

- ``load_splits`` / ``load_eval``: uint8 images ``(N, 784)`` and int32 labels;
- ``init_params``, ``forward``, ``loss_fn``, ``cross_entropy``: the model;
- ``TrainConfig``, ``fit``: training; ``train_run``: training into a folder;
- ``evaluate``, ``predict``: accuracy reports and predicted classes.
"""

from mnist_jax.data import Dataset, Splits, load_eval, load_splits
from mnist_jax.errors import MnistJaxError
from mnist_jax.evaluate import Report, evaluate
from mnist_jax.model import cross_entropy, forward, init_params, loss_fn
from mnist_jax.run import DataSpec, train_run
from mnist_jax.train import TrainConfig, TrainState, fit, predict

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
