"""mnist-jax: a from-scratch, functional JAX MLP for MNIST digits."""

from mnist_jax.errors import MnistJaxError
from mnist_jax.model import (
    cross_entropy,
    forward,
    init_params,
    loss_fn,
)

__all__ = [
    "MnistJaxError",
    "cross_entropy",
    "forward",
    "init_params",
    "loss_fn",
]
__version__ = "0.1.0"
