"""The MLP: parameters as a pytree, a pure forward pass and the loss.

Layout is row-major: a batch of images is ``X`` with shape ``(m, 784)`` and
layer ``l`` holds ``w`` with shape ``(n_{l-1}, n_l)`` and ``b`` with shape
``(n_l,)``, so that ``Z_l = A_{l-1} @ w + b``. The notebook wrote the same
network column-major (``W1: 100x784``, ``X: 784xm``); its ``W_l`` is our
``w.T``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mnist_jax.errors import MnistJaxError

Array = jax.Array
Params = list[dict[str, Array]]

DEFAULT_SIZES = (784, 100, 50, 20, 10)
INITS = ("he", "small")


def init_params(
    key: Array,
    sizes: Sequence[int] = DEFAULT_SIZES,
    init: str = "he",
    dtype: jnp.dtype = jnp.float32,
) -> Params:
    """Returns ``[{"w": (n_in, n_out), "b": (n_out,)}, ...]``, one dict a layer.

    init: ``"he"`` draws ``w ~ N(0, 2 / n_in)``; ``"small"`` is the notebook's
    ``0.01 * N(0, 1)``. Biases start at zero.
    """
    if init not in INITS:
        raise MnistJaxError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    if len(sizes) < 2 or any(int(n) < 1 for n in sizes):
        raise MnistJaxError(
            f"layer sizes must be two or more positive numbers: {sizes}"
        )

    params = []
    keys = jax.random.split(key, len(sizes) - 1)
    for k, n_in, n_out in zip(keys, sizes[:-1], sizes[1:], strict=True):
        scale = jnp.sqrt(2.0 / n_in) if init == "he" else 0.01
        w = scale * jax.random.normal(k, (n_in, n_out), dtype)
        params.append({"w": w.astype(dtype), "b": jnp.zeros((n_out,), dtype)})
    return params


def layer_sizes(params: Params) -> tuple[int, ...]:
    """Returns ``(n_0, n_1, ..., n_L)`` read from the weight shapes."""
    return (params[0]["w"].shape[0], *(layer["w"].shape[1] for layer in params))


def to_inputs(images: Array, dtype: jnp.dtype) -> Array:
    """Returns images as ``dtype`` in [0, 1]: uint8 is divided by 255.

    images: ``(m, 784)`` or ``(m, 28, 28)``; the result is ``(m, 784)``.
    Float images are taken as already scaled.
    """
    x = images.reshape(images.shape[0], -1)
    if jnp.issubdtype(x.dtype, jnp.integer):
        return x.astype(dtype) / 255.0
    return x.astype(dtype)


def dropout_masks(
    key: Array, params: Params, batch: int, keep_prob: float
) -> list[Array]:
    """Returns one boolean keep-mask ``(batch, n_l)`` per hidden layer.

    Each unit is kept with probability ``keep_prob`` (to within 2**-32). The
    forward pass and the hand-written backward pass draw the same masks from
    the same key. All layers' bits come from one draw of ``(batch, sum n_l)``
    words: on the CPU JAX runs Threefry as a loop of small kernels, and one
    draw instead of a split and a draw per layer made a batch-128 training
    step about 10 % faster (see benchmarks/README.md).
    """
    hidden = [layer["b"].shape[0] for layer in params[:-1]]
    threshold = jnp.uint32(min(round(keep_prob * 2.0**32), 2**32 - 1))
    keep = jax.random.bits(key, (batch, max(sum(hidden), 1)), jnp.uint32) < threshold
    # On the CPU Threefry runs as a loop whose output stays in memory, so the
    # bits are drawn once a step and only the comparison is repeated in the
    # backward kernels. Where the generator is unrolled (accelerators) XLA
    # may fuse it into both kernels and draw the bits twice.
    bounds = np.cumsum([0, *hidden])
    return [keep[:, a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def forward(
    params: Params,
    images: Array,
    *,
    key: Array | None = None,
    keep_prob: float = 0.8,
) -> Array:
    """Returns logits ``(m, n_L)`` for images ``(m, 784)`` (uint8 or float).

    Hidden layers are ReLU. With a ``key`` and ``keep_prob < 1`` each hidden
    activation is multiplied by a keep-mask and divided by ``keep_prob``
    (inverted dropout), so evaluation (``key=None``) needs no rescaling.
    The output layer has no activation: softmax lives in the loss.
    """
    a = to_inputs(images, params[0]["w"].dtype)
    masks = None
    if key is not None and keep_prob < 1.0:
        masks = dropout_masks(key, params, a.shape[0], keep_prob)

    for i, layer in enumerate(params[:-1]):
        a = jax.nn.relu(a @ layer["w"] + layer["b"])
        if masks is not None:
            a = jnp.where(masks[i], a / keep_prob, 0.0)
    last = params[-1]
    return a @ last["w"] + last["b"]


def cross_entropy(logits: Array, labels: Array, weights: Array | None = None) -> Array:
    """Returns the mean softmax cross-entropy of logits ``(m, k)``, labels ``(m,)``.

    Computed as ``logsumexp(z) - z[y]``, which stays finite for logits of
    any size. ``weights`` ``(m,)`` of 0 or 1 leave padded rows out of the
    mean; the mean is then over the rows that count.
    """
    lse = jax.nn.logsumexp(logits, axis=-1)
    picked = jnp.take_along_axis(logits, labels[:, None].astype(jnp.int32), axis=-1)
    per_example = lse - picked[:, 0]
    if weights is None:
        return per_example.mean()
    weights = weights.astype(per_example.dtype)
    return (per_example * weights).sum() / jnp.maximum(weights.sum(), 1.0)


def loss_fn(
    params: Params,
    images: Array,
    labels: Array,
    *,
    key: Array | None = None,
    keep_prob: float = 0.8,
    weights: Array | None = None,
) -> Array:
    """Returns the scalar training loss: cross-entropy of ``forward``."""
    logits = forward(params, images, key=key, keep_prob=keep_prob)
    return cross_entropy(logits, labels, weights)


loss = jax.jit(loss_fn, static_argnames=("keep_prob",))
predict_logits = jax.jit(forward, static_argnames=("keep_prob",))


def check_pairs(images, labels, source: str) -> None:
    """Raises ``MnistJaxError`` unless there is one label per image.

    images: ``(N, ...)``; labels: ``(N,)``. Checked on the host before any
    array reaches JAX, which would broadcast or index past a mismatch.
    """
    n_images, n_labels = np.shape(images)[:1], np.shape(labels)
    if len(n_labels) != 1 or n_images != n_labels:
        raise MnistJaxError(
            f"{source}: {n_images[0] if n_images else 0} images but labels of "
            f"shape {n_labels}; give one label per image"
        )


def check_images(images, source: str) -> None:
    """Raises ``MnistJaxError`` unless pixels are 0-255 integers or floats in [0, 1].

    Checked on the host: ``to_inputs`` divides integers by 255 and takes
    floats as already scaled, so a float image in 0-255 would silently feed
    the network values 255 times too large.
    """
    arr = np.asarray(images)
    if arr.size == 0 or arr.dtype == np.uint8:  # uint8 is in range by its type
        return
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise MnistJaxError(f"{source}: images must be numbers, got {arr.dtype}")
    low, high = float(arr.min()), float(arr.max())
    top = 255 if np.issubdtype(arr.dtype, np.integer) else 1
    if not (low >= 0 and high <= top):
        kind = "integer pixels" if top == 255 else "float pixels"
        raise MnistJaxError(
            f"{source}: {kind} must lie in 0..{top}, found {low:g}..{high:g}; "
            "give uint8 pixels 0-255 or floats scaled to [0, 1]"
        )


def check_labels(labels, num_classes: int = 10, source: str = "labels") -> None:
    """Raises ``MnistJaxError`` unless every label is an integer in 0..k-1.

    Checked on the host, before labels reach ``one_hot`` or ``take``, which
    would otherwise silently clip or zero out a bad label.
    """
    import numpy as np

    arr = np.asarray(labels)
    if arr.size == 0:
        return
    if not np.issubdtype(arr.dtype, np.integer):
        raise MnistJaxError(f"{source}: labels must be integers, got {arr.dtype}")
    bad = np.flatnonzero((arr < 0) | (arr >= num_classes))
    if bad.size:
        i = int(bad[0])
        raise MnistJaxError(
            f"{source}: label {int(arr.flat[i])} at index {i} is outside "
            f"0..{num_classes - 1}"
        )
