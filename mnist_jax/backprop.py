"""The notebook's hand-written backward pass, kept as a check on ``jax.grad``.

In the notebook's column-major terms, with ``A_0 = X``, ``m`` examples and
``L`` layers:

    dZ_L     = A_L - onehot(Y)              (A_L is the softmax output)
    dW_l     = dZ_l · A_{l-1}ᵀ / m
    db_l     = Σ dZ_l / m                   (summed over the examples)
    dA_{l-1} = W_lᵀ · dZ_l, times the dropout mask, divided by keep_prob
    dZ_{l-1} = dA_{l-1} ⊙ ReLU'(Z_{l-1})

Our layout is row-major (one example a row, ``w`` is ``(n_in, n_out)``), so
the same equations read ``dw = A_prevᵀ @ dZ / m``, ``db = dZ.sum(0) / m`` and
``dA_prev = dZ @ wᵀ``. Each equation that people get wrong is one field of
``Rules``, so a test can swap in a classic mistake and watch the check fail.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from mnist_jax.model import Params, check_labels, dropout_masks, to_inputs

Array = jax.Array


def one_hot(labels: Array, num_classes: int, dtype: Any) -> Array:
    """Returns targets ``(m, k)``: row ``i`` is 1 at ``labels[i]``, else 0."""
    return jax.nn.one_hot(labels, num_classes, dtype=dtype)


def example_count(weights: Array | None, batch: int, dtype: Any) -> Array:
    """Returns the ``m`` of ``1/m``: the batch size, or the rows that count.

    weights: ``(m,)`` of 0 or 1, as in ``model.cross_entropy``; at least 1.
    """
    if weights is None:
        return jnp.asarray(batch, dtype)
    return jnp.maximum(weights.astype(dtype).sum(), 1.0)


def weight_grad(a_prev: Array, dz: Array, count: Array) -> Array:
    """Returns ``dw = A_prevᵀ @ dZ / m``, ``(n_in, n_out)``.

    a_prev: ``(m, n_in)``, the layer's input after dropout; dz: ``(m, n_out)``.
    """
    return a_prev.T @ dz / count


def undo_dropout(da: Array, mask: Array, keep_prob: float) -> Array:
    """Returns ``dA`` through inverted dropout: masked, divided by keep_prob."""
    return jnp.where(mask, da / keep_prob, 0.0)


def relu_grad(z: Array, a: Array) -> Array:
    """Returns ``ReLU'(z)``: 1 where ``z > 0``, else 0 (as ``jax.nn.relu``)."""
    del a
    return (z > 0).astype(z.dtype)


class Rules(NamedTuple):
    """The equations of the backward pass, one a field; ``RULES`` is right."""

    one_hot: Callable[[Array, int, Any], Array] = one_hot
    example_count: Callable[[Array | None, int, Any], Array] = example_count
    weight_grad: Callable[[Array, Array, Array], Array] = weight_grad
    undo_dropout: Callable[[Array, Array, float], Array] = undo_dropout
    activation_grad: Callable[[Array, Array], Array] = relu_grad


RULES = Rules()


class Cache(NamedTuple):
    """What the backward pass needs from the forward pass, per layer."""

    inputs: list[Array]  # A_{l-1} after dropout, (m, n_{l-1}), one per layer
    zs: list[Array]  # Z_l, (m, n_l), one per layer
    activations: list[Array]  # ReLU(Z_l) before dropout, hidden layers only


def forward_cache(
    params: Params, x: Array, masks: list[Array] | None, keep_prob: float
) -> Cache:
    """Returns the forward pass's intermediates; the same arithmetic as forward.

    x: ``(m, n_0)`` float inputs; masks: one ``(m, n_l)`` per hidden layer.
    """
    inputs, zs, activations = [], [], []
    a = x
    for i, layer in enumerate(params):
        inputs.append(a)
        zs.append(a @ layer["w"] + layer["b"])
        if i == len(params) - 1:
            break
        a = jax.nn.relu(zs[-1])
        activations.append(a)
        if masks is not None:
            a = jnp.where(masks[i], a / keep_prob, 0.0)
    return Cache(inputs, zs, activations)


def manual_grads(
    params: Params,
    images: Array,
    labels: Array,
    *,
    key: Array | None = None,
    keep_prob: float = 0.8,
    weights: Array | None = None,
    rules: Rules = RULES,
) -> Params:
    """Returns the gradient of ``model.loss_fn`` by the notebook's equations.

    Arguments are those of ``model.loss_fn``: images ``(m, n_0)`` (uint8 or
    float), labels ``(m,)``, the same dropout ``key`` (so the masks are the
    same) and ``weights`` ``(m,)`` of 0 or 1. The result has the structure
    ``jax.grad`` gives: ``[{"w": (n_in, n_out), "b": (n_out,)}, ...]``.
    rules: the equations used; tests pass mistaken ones.
    """
    num_classes = params[-1]["b"].shape[0]
    if not isinstance(labels, jax.core.Tracer):
        check_labels(labels, num_classes)

    x = to_inputs(images, params[0]["w"].dtype)
    batch, dtype = x.shape[0], x.dtype
    masks = None
    if key is not None and keep_prob < 1.0:
        masks = dropout_masks(key, params, batch, keep_prob)
    cache = forward_cache(params, x, masks, keep_prob)

    dz = jax.nn.softmax(cache.zs[-1]) - rules.one_hot(labels, num_classes, dtype)
    if weights is not None:
        dz = dz * weights.astype(dtype)[:, None]
    count = rules.example_count(weights, batch, dtype)

    grads = []
    for i in reversed(range(len(params))):
        dw = rules.weight_grad(cache.inputs[i], dz, count)
        grads.append({"w": dw, "b": dz.sum(axis=0) / count})
        if i == 0:
            break
        da = dz @ params[i]["w"].T
        if masks is not None:
            da = rules.undo_dropout(da, masks[i - 1], keep_prob)
        dz = da * rules.activation_grad(cache.zs[i - 1], cache.activations[i - 1])
    return grads[::-1]


manual_grads_jit = jax.jit(manual_grads, static_argnames=("keep_prob", "rules"))
