"""Peer: the notebook's equations in NumPy, float32, one batch at a time.

Forward, for hidden layers ``l`` and ``X`` ``(m, 784)`` in [0, 1]::

    Z_l = A_{l-1} W_l + b_l,   A_l = ReLU(Z_l) * D_l / keep,   D_l ~ Bernoulli(keep)
    Z_L = A_{L-1} W_L + b_L,   P = softmax(Z_L)

Backward (hand-written), with ``Y`` one-hot::

    dZ_L = (P - Y) / m
    dW_l = A_{l-1}^T dZ_l,   db_l = sum over rows of dZ_l
    dA_{l-1} = dZ_l W_l^T * D_{l-1} / keep,   dZ_{l-1} = dA_{l-1} * [Z_{l-1} > 0]

Adam, per parameter ``p`` with gradient ``g`` at step ``t``::

    m = b1 m + (1 - b1) g,   v = b2 v + (1 - b2) g^2
    p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

Row-major like ``mnist_jax.model`` (the notebook's ``W_l`` is our ``W_l^T``).
A peer for the benchmark, not product code.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Params = list[dict[str, np.ndarray]]


def init_params(rng: np.random.Generator, sizes) -> Params:
    """Returns He-initialised float32 ``[{"w": (n_in, n_out), "b": (n_out,)}]``."""
    return [
        {
            "w": (rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)).astype(
                np.float32
            ),
            "b": np.zeros(n_out, np.float32),
        }
        for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True)
    ]


def forward(params: Params, x: np.ndarray, masks=None, keep: float = 1.0):
    """Returns (logits ``(m, k)``, inputs of each layer, pre-activations)."""
    inputs, zs = [], []
    a = x
    for i, layer in enumerate(params):
        inputs.append(a)
        z = a @ layer["w"] + layer["b"]
        zs.append(z)
        if i == len(params) - 1:
            return z, inputs, zs
        a = np.maximum(z, 0.0)
        if masks is not None:
            a = a * masks[i] * np.float32(1.0 / keep)
    raise ValueError("params is empty")


def loss_and_grads(
    params: Params,
    x: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator | None = None,
    keep: float = 1.0,
) -> tuple[float, list[dict[str, np.ndarray]]]:
    """Returns (mean cross-entropy, gradients shaped like ``params``).

    x: ``(m, 784)`` float32; labels: ``(m,)`` int. With ``rng`` and
    ``keep < 1`` every hidden layer gets a fresh dropout mask.
    """
    m = x.shape[0]
    masks = None
    if rng is not None and keep < 1.0:
        masks = [
            rng.random((m, layer["b"].shape[0]), np.float32) < keep
            for layer in params[:-1]
        ]
    logits, inputs, zs = forward(params, x, masks, keep)

    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = float(-log_p[np.arange(m), labels].mean())

    dz = np.exp(log_p)
    dz[np.arange(m), labels] -= 1.0
    dz /= m
    grads: list[dict[str, np.ndarray]] = []
    for i in reversed(range(len(params))):
        grads.append({"w": inputs[i].T @ dz, "b": dz.sum(axis=0)})
        if i == 0:
            break
        da = dz @ params[i]["w"].T
        if masks is not None:
            da = da * masks[i - 1] * np.float32(1.0 / keep)
        dz = da * (zs[i - 1] > 0)
    return loss, grads[::-1]


class Adam:
    """Adam over a list of ``{"w", "b"}`` dicts, updating them in place."""

    def __init__(self, params: Params, lr=3e-3, b1=0.9, b2=0.999, eps=1e-8):
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps
        self.t = 0
        self.m = [{k: np.zeros_like(v) for k, v in p.items()} for p in params]
        self.v = [{k: np.zeros_like(v) for k, v in p.items()} for p in params]

    def update(self, params: Params, grads) -> None:
        self.t += 1
        c1 = 1.0 - self.b1**self.t
        c2 = 1.0 - self.b2**self.t
        for p, g, m, v in zip(params, grads, self.m, self.v, strict=True):
            for k in p:
                m[k] *= self.b1
                m[k] += (1.0 - self.b1) * g[k]
                v[k] *= self.b2
                v[k] += (1.0 - self.b2) * g[k] * g[k]
                step = (m[k] / c1) / (np.sqrt(v[k] / c2) + self.eps)
                p[k] -= np.float32(self.lr) * step


class NumpyTrainer:
    """The NumPy peer: a fixed-shape model, its Adam state and a random stream.

    images: ``(N, 784)`` uint8; labels: ``(N,)`` int. augment: a function
    ``(images (m, 784) float32, rng) -> images`` applied to each batch.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        sizes,
        keep: float = 0.8,
        augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
        seed: int = 0,
    ):
        self.images, self.labels, self.keep, self.augment = (
            images,
            labels,
            keep,
            augment,
        )
        self.rng = np.random.default_rng(seed)
        self.params = init_params(self.rng, sizes)
        self.adam = Adam(self.params)

    def steps(self, batch: int, count: int) -> float:
        """Runs ``count`` steps on random batches; returns the last loss."""
        order = self.rng.permutation(len(self.images))
        loss = float("nan")
        for i in range(count):
            start = (i * batch) % max(len(order) - batch + 1, 1)
            idx = order[start : start + batch]
            loss = self._step(idx)
        return loss

    def epoch(self, batch: int) -> float:
        """Runs one shuffled epoch, the short last batch included."""
        order = self.rng.permutation(len(self.images))
        loss = float("nan")
        for start in range(0, len(order), batch):
            loss = self._step(order[start : start + batch])
        return loss

    def _step(self, idx: np.ndarray) -> float:
        x = self.images[idx].astype(np.float32) * np.float32(1 / 255)
        if self.augment is not None:
            x = self.augment(x, self.rng)
        loss, grads = loss_and_grads(
            self.params, x, self.labels[idx], self.rng, self.keep
        )
        self.adam.update(self.params, grads)
        return loss

    def predict(self, images: np.ndarray, batch: int) -> np.ndarray:
        """Returns predicted classes ``(N,)`` for images ``(N, 784)`` uint8."""
        out = []
        for start in range(0, len(images), batch):
            x = images[start : start + batch].astype(np.float32) * np.float32(1 / 255)
            out.append(forward(self.params, x)[0].argmax(axis=1))
        return np.concatenate(out)
