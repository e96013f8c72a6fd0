"""Three-way gradient check: the manual backward pass, jax.grad, and slopes.

For every parameter leaf (each layer's ``w`` and ``b``) it compares

- ``manual_grads`` with ``jax.grad`` of the jitted loss, by the relative
  error ``max|manual - auto| / max(max|auto|, tiny)``: the worst entry,
  measured against the largest entry of the reference gradient, on that
  leaf in float64 and on the whole gradient in float32 (see TOLERANCES);
- both with central finite differences along a few random unit directions
  ``d`` on that leaf: ``(L(p + h d) - L(p - h d)) / 2h`` against ``<g, d>``,
  with relative error ``|slope - <g, d>| / max(|auto|_2, noise / tol)``:
  the error measured against the steepest slope a unit direction could
  show, or, for gradients too small for a central difference to resolve,
  against its rounding noise ``noise = NOISE_ULPS * eps * |L| / h`` over
  the slope tolerance ``tol`` (so errors within that noise always pass).

``tiny`` is the smallest normal number of the dtype, so a leaf whose gradient
is exactly zero does not divide by zero. A direction whose step moves some
hidden pre-activation across zero measures a kink, not a derivative; it is
counted in the report, and left out where ``Tolerances.skip_kinks`` says.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mnist_jax import model
from mnist_jax.backprop import RULES, Rules, forward_cache, manual_grads
from mnist_jax.errors import MnistJaxError
from mnist_jax.model import Params

Array = jax.Array


@dataclass(frozen=True)
class Tolerances:
    """Largest relative errors that pass, and the finite-difference step."""

    grad: float  # manual against jax.grad
    per_leaf: bool  # scale grad errors by each leaf's largest entry, not all
    slope: float  # either gradient against finite differences
    step: float  # h, along a unit direction
    skip_kinks: bool  # leave out directions whose step crosses a ReLU kink


TOLERANCES = {
    # Manual and automatic differentiation do the same arithmetic in another
    # order, so in float64 they agree to a few ulps (~1e-16). Central
    # differences err by ~h²·L''' + eps·L/h, near 1e-10 at h = 1e-5.
    # One kink crossed moves a slope by far more than 1e-6, so such
    # directions are left out.
    "float64": Tolerances(
        grad=1e-10, per_leaf=True, slope=1e-6, step=1e-5, skip_kinks=True
    ),
    # float32 has eps ~ 1.2e-7, and each gradient entry is a batch sum of
    # products through every layer, rounded differently by the two passes.
    # Per leaf that is ill-conditioned: the output bias of a near-uniform
    # softmax is a difference of terms near 1/k that cancel to ~1e-6, so
    # float32 gets it right to only ~1e-3 of itself. Errors are therefore
    # scaled by the largest entry of the whole gradient, where they stay
    # below ~1e-6; 1e-4 leaves a hundredfold margin and still fails a wrong
    # equation (errors of order 1e-2 and more).
    # Central differences in float32 are a coarse witness: at h = 3e-3 the
    # rounded losses put ~1e-3 of noise on each slope (see NOISE_ULPS).
    # Kinked directions are left out: with --init small, pre-activations
    # sit within a step of zero and one kink moves a slope by up to ~8e-2.
    # Over seeds 0-5, both inits and two networks the worst remaining
    # slope error was 7e-4; 1e-2 leaves a tenfold margin.
    # Known limitation: a step this long crosses some kink on most
    # directions of a wide hidden layer, so in float32 the slopes there are
    # often all left out (the kinks column shows it); float64 is the sharp
    # finite-difference check, and the grad tolerance the sharp float32 one.
    "float32": Tolerances(
        grad=1e-4, per_leaf=False, slope=1e-2, step=3e-3, skip_kinks=True
    ),
}


# A central difference subtracts two losses, each rounded by a few ulps (the
# batch mean adds some more), so its slope carries about this many eps of
# |L| / h as noise: errors that small pass whatever the gradient's size.
NOISE_ULPS = 16


@dataclass(frozen=True)
class LeafCheck:
    """The worst errors found on one parameter leaf."""

    layer: int  # 1 for the first layer
    name: str  # "w" or "b"
    shape: tuple[int, ...]
    grad_abs: float  # max |manual - jax.grad|
    grad_rel: float
    manual_slope_abs: float  # worst |finite difference - <manual, d>|
    manual_slope_rel: float
    auto_slope_abs: float  # worst |finite difference - <jax.grad, d>|
    auto_slope_rel: float
    kinked: int  # directions whose step crossed a ReLU kink


@dataclass(frozen=True)
class GradcheckReport:
    """Per-leaf errors, the tolerances applied, and the verdict."""

    dtype: str
    tolerances: Tolerances
    leaves: tuple[LeafCheck, ...]

    @property
    def max_grad_rel(self) -> float:
        """Returns the largest manual-against-jax.grad relative error."""
        return max(leaf.grad_rel for leaf in self.leaves)

    @property
    def max_slope_rel(self) -> float:
        """Returns the largest relative error against finite differences."""
        return max(
            max(leaf.manual_slope_rel, leaf.auto_slope_rel) for leaf in self.leaves
        )

    @property
    def passed(self) -> bool:
        """Returns whether every error is within its tolerance (NaN fails)."""
        return bool(
            self.max_grad_rel <= self.tolerances.grad
            and self.max_slope_rel <= self.tolerances.slope
        )


class Problem(NamedTuple):
    """A random network and batch to check gradients on."""

    params: Params
    images: Array  # (m, n_0) uint8
    labels: Array  # (m,) int32 in 0..n_L-1
    key: Array  # dropout key


def random_problem(
    seed: int, sizes: Sequence[int], batch: int, init: str, dtype: str
) -> Problem:
    """Returns parameters, random uint8 images and labels, and a dropout key.

    The images are uniform noise from the seed, not digits: the check is
    about the equations, and noise reaches every input weight.
    """
    if batch < 1:
        raise MnistJaxError(f"batch must be at least 1, got {batch}")
    if jnp.zeros((), dtype).dtype != jnp.dtype(dtype):
        raise MnistJaxError(f"{dtype} needs jax_enable_x64 set before the check")

    k_params, k_images, k_labels, k_drop = jax.random.split(jax.random.key(seed), 4)
    params = model.init_params(k_params, sizes, init, jnp.dtype(dtype))
    images = jax.random.randint(k_images, (batch, sizes[0]), 0, 256).astype(jnp.uint8)
    labels = jax.random.randint(k_labels, (batch,), 0, sizes[-1])
    return Problem(params, images, labels, k_drop)


def unit_directions(key: Array, count: int, leaves: list[Array]) -> list[Array]:
    """Returns per leaf ``(count, *leaf.shape)`` random directions of unit L2 norm.

    Drawn as one normal vector, which compiles far faster than a draw a leaf.
    """
    sizes = [leaf.size for leaf in leaves]
    flat = jax.random.normal(key, (count, sum(sizes)), leaves[0].dtype)
    dirs, start = [], 0
    for leaf, size in zip(leaves, sizes, strict=True):
        part = flat[:, start : start + size]
        part = part / jnp.sqrt(jnp.sum(part**2, axis=1, keepdims=True))
        dirs.append(part.reshape((count, *leaf.shape)))
        start += size
    return dirs


class LeafMeasures(NamedTuple):
    """Raw measurements on one leaf, before they become relative errors."""

    grad_abs: Array  # max |manual - auto|; inf when the shapes differ
    auto_max: Array  # max |auto|
    auto_norm: Array  # |auto|_2
    loss: Array  # L(p), for the rounding noise of a central difference
    slopes: Array  # (K,) central differences along the directions
    kinked: Array  # (K,) True where the step crossed a ReLU kink
    manual_inner: Array  # (K,) <manual, d>; nan when the shapes differ
    auto_inner: Array  # (K,) <auto, d>


@functools.partial(
    jax.jit, static_argnames=("keep_prob", "rules", "directions", "step")
)
def measure(
    problem: Problem,
    weights: Array | None,
    dir_key: Array,
    *,
    keep_prob: float,
    rules: Rules,
    directions: int,
    step: float,
) -> list[LeafMeasures]:
    """Returns raw measurements per leaf, in ``jax.tree.leaves`` order.

    One compiled program: both gradients, and ``directions`` central
    differences with step ``step`` on every leaf (none when 0).
    """
    params, images, labels, key = problem
    kwargs: dict[str, Any] = {"key": key, "keep_prob": keep_prob, "weights": weights}
    manual = jax.tree.leaves(
        manual_grads(params, images, labels, rules=rules, **kwargs)
    )
    auto = jax.tree.leaves(jax.grad(model.loss)(params, images, labels, **kwargs))
    leaves = jax.tree.leaves(params)
    dirs = unit_directions(dir_key, directions, leaves)
    slopes, kinked = central_slopes(params, dirs, step, images, labels, **kwargs)
    loss = model.loss_fn(params, images, labels, **kwargs)

    out = []
    for i, (g_manual, g_auto) in enumerate(zip(manual, auto, strict=True)):
        auto_inner = jnp.tensordot(dirs[i], g_auto, axes=g_auto.ndim)
        grad_abs = _max_abs_difference(g_manual, g_auto)
        if g_manual.shape == g_auto.shape:
            manual_inner = jnp.tensordot(dirs[i], g_manual, axes=g_auto.ndim)
        else:
            manual_inner = jnp.full_like(auto_inner, jnp.nan)
        auto_max = jnp.abs(g_auto).max(initial=0.0)
        auto_norm = jnp.sqrt(jnp.sum(g_auto**2))
        rows = slice(i * directions, (i + 1) * directions)
        out.append(
            LeafMeasures(
                grad_abs,
                auto_max,
                auto_norm,
                loss,
                slopes[rows],
                kinked[rows],
                manual_inner,
                auto_inner,
            )
        )
    return out


def central_slopes(
    params: Params,
    dirs: list[Array],
    step: float,
    images: Array,
    labels: Array,
    *,
    key: Array | None,
    keep_prob: float,
    weights: Array | None,
) -> tuple[Array, Array]:
    """Returns ``(L(p + h d) - L(p - h d)) / 2h`` per direction, and kinks.

    dirs: per leaf (``jax.tree.leaves`` order) ``(K, *leaf.shape)``; each
    direction moves its own leaf only. Both results are ``(n_leaves * K,)``,
    leaf by leaf; the second is True where some hidden pre-activation has
    another sign at ``p + h d`` than at ``p - h d``: the step crossed a ReLU
    kink, and the difference is no derivative there.
    """
    leaves, treedef = jax.tree.flatten(params)
    count = sum(d.shape[0] for d in dirs)
    x = model.to_inputs(images, leaves[0].dtype)
    masks = None
    if key is not None and keep_prob < 1.0:
        masks = model.dropout_masks(key, params, x.shape[0], keep_prob)

    # Row r of every stacked leaf is zero except on the leaf direction r moves.
    stacked, start = [], 0
    for leaf, d in zip(leaves, dirs, strict=True):
        rows = jnp.zeros((count, *leaf.shape), leaf.dtype)
        stacked.append(rows.at[start : start + d.shape[0]].set(d))
        start += d.shape[0]

    def slope(shift: list[Array]) -> tuple[Array, Array]:
        def at(sign: float) -> tuple[Array, list[Array]]:
            moved = [p + sign * step * s for p, s in zip(leaves, shift, strict=True)]
            tree = jax.tree.unflatten(treedef, moved)
            loss = model.loss_fn(
                tree, images, labels, key=key, keep_prob=keep_prob, weights=weights
            )
            return loss, forward_cache(tree, x, masks, keep_prob).zs[:-1]

        up, zs_up = at(1.0)
        down, zs_down = at(-1.0)
        flips = [
            jnp.any((u > 0) != (d > 0)) for u, d in zip(zs_up, zs_down, strict=True)
        ]
        return (up - down) / (2 * step), jnp.any(jnp.array([False, *flips]))

    if count == 0:
        return jnp.zeros((0,), leaves[0].dtype), jnp.zeros((0,), bool)
    return jax.vmap(slope)(stacked)


def relative(err: float, scale: float, dtype: Any) -> float:
    """Returns ``err / max(scale, tiny)``; tiny is the dtype's smallest normal."""
    return float(err) / max(float(scale), float(jnp.finfo(dtype).tiny))


def _max_abs_difference(manual: Array, auto: Array) -> Array:
    """Returns ``max|manual - auto|``, or inf when the shapes differ."""
    if manual.shape != auto.shape:
        return jnp.asarray(jnp.inf, auto.dtype)
    return jnp.abs(manual - auto).max(initial=0.0)


def grad_scales(measures: list[LeafMeasures], per_leaf: bool) -> list[float]:
    """Returns the scale of each leaf's grad error: its max |auto|, or all's."""
    maxima = [float(m.auto_max) for m in measures]
    return maxima if per_leaf else [max(maxima)] * len(maxima)


@functools.partial(jax.jit, static_argnames=("keep_prob", "rules"))
def _grad_differences(
    problem: Problem, weights: Array | None, *, keep_prob: float, rules: Rules
) -> list[tuple[Array, Array]]:
    """Returns ``(max|manual - auto|, max|auto|)`` per leaf; no slopes."""
    params, images, labels, key = problem
    kwargs: dict[str, Any] = {"key": key, "keep_prob": keep_prob, "weights": weights}
    manual = manual_grads(params, images, labels, rules=rules, **kwargs)
    auto = jax.grad(model.loss)(params, images, labels, **kwargs)
    return [
        (_max_abs_difference(m, a), jnp.abs(a).max(initial=0.0))
        for m, a in zip(jax.tree.leaves(manual), jax.tree.leaves(auto), strict=True)
    ]


def grad_agreement(
    problem: Problem,
    *,
    keep_prob: float,
    weights: Array | None = None,
    rules: Rules = RULES,
) -> list[tuple[float, float]]:
    """Returns ``(max abs, relative)`` error of manual against jax.grad per leaf.

    The relative error is ``max|manual - auto| / max(scale, tiny)``, with the
    scale of ``TOLERANCES`` for the params' dtype. Cheaper than
    ``check_gradients``: no finite differences.
    """
    pairs = _grad_differences(problem, weights, keep_prob=keep_prob, rules=rules)
    dtype = problem.params[0]["w"].dtype
    maxima = [float(top) for _, top in pairs]
    if not TOLERANCES[str(jnp.dtype(dtype))].per_leaf:
        maxima = [max(maxima)] * len(maxima)
    return [
        (float(err), relative(err, top, dtype))
        for (err, _), top in zip(pairs, maxima, strict=True)
    ]


def _worst_slope_error(
    slopes: np.ndarray, inner: np.ndarray, kinked: np.ndarray
) -> float:
    """Returns ``max |slope - <g, d>|`` over directions without a kink.

    0 when every direction crossed a kink; inf where ``inner`` is nan.
    """
    err = np.abs(slopes - inner)[~kinked]
    if np.isnan(err).any():
        return float("inf")
    return float(err.max(initial=0.0))


def check_gradients(
    problem: Problem,
    *,
    keep_prob: float,
    tolerances: Tolerances,
    directions: int = 3,
    weights: Array | None = None,
    rules: Rules = RULES,
    seed: int = 0,
) -> GradcheckReport:
    """Returns the three-way comparison for one network and batch.

    directions: random unit directions per leaf for finite differences,
    drawn from ``seed``. rules: the backward pass's equations (tests pass
    mistaken ones to show the check fails).
    """
    if not 0.0 < keep_prob <= 1.0:
        raise MnistJaxError(f"keep-prob must be in (0, 1], got {keep_prob}")
    if directions < 1:
        raise MnistJaxError(f"directions must be at least 1, got {directions}")

    measures = jax.device_get(
        measure(
            problem,
            weights,
            jax.random.key(seed),
            keep_prob=keep_prob,
            rules=rules,
            directions=directions,
            step=tolerances.step,
        )
    )
    paths = [path for path, _ in jax.tree.flatten_with_path(problem.params)[0]]
    dtype = problem.params[0]["w"].dtype
    eps = float(jnp.finfo(dtype).eps)
    scales = grad_scales(measures, tolerances.per_leaf)
    checks = []
    for path, m, leaf, grad_scale in zip(
        paths, measures, jax.tree.leaves(problem.params), scales, strict=True
    ):
        left_out = m.kinked if tolerances.skip_kinks else np.zeros_like(m.kinked)
        manual_slope = _worst_slope_error(m.slopes, m.manual_inner, left_out)
        auto_slope = _worst_slope_error(m.slopes, m.auto_inner, left_out)
        noise = NOISE_ULPS * eps * max(abs(float(m.loss)), 1.0) / tolerances.step
        scale = max(float(m.auto_norm), noise / tolerances.slope)
        checks.append(
            LeafCheck(
                layer=path[0].idx + 1,
                name=path[1].key,
                shape=tuple(leaf.shape),
                grad_abs=float(m.grad_abs),
                grad_rel=relative(m.grad_abs, grad_scale, dtype),
                manual_slope_abs=manual_slope,
                manual_slope_rel=relative(manual_slope, scale, dtype),
                auto_slope_abs=auto_slope,
                auto_slope_rel=relative(auto_slope, scale, dtype),
                kinked=int(m.kinked.sum()),
            )
        )
    return GradcheckReport(str(jnp.dtype(dtype)), tolerances, tuple(checks))


def run_gradcheck(
    *,
    dtype: str = "float64",
    sizes: Sequence[int] = model.DEFAULT_SIZES,
    batch: int = 64,
    keep_prob: float = 0.8,
    init: str = "he",
    seed: int = 0,
    directions: int = 3,
    rules: Rules = RULES,
) -> GradcheckReport:
    """Returns the check on a random network and batch of random uint8 images.

    dtype: "float64" (needs ``jax_enable_x64``) or "float32"; it picks the
    tolerances in ``TOLERANCES``. Everything random comes from ``seed``.
    """
    if dtype not in TOLERANCES:
        raise MnistJaxError(
            f"dtype must be one of {', '.join(TOLERANCES)}, got {dtype}"
        )
    problem = random_problem(seed, sizes, batch, init, dtype)
    return check_gradients(
        problem,
        keep_prob=keep_prob,
        tolerances=TOLERANCES[dtype],
        directions=directions,
        rules=rules,
        seed=seed,
    )


def format_report(report: GradcheckReport) -> str:
    """Returns the per-leaf table and a last line with the verdict."""
    tol = report.tolerances
    lines = [
        f"{'':20} {'manual vs jax.grad':>19}   finite differences (h={tol.step:g})",
        f"{'layer':>5} {'':1} {'shape':<12} {'max abs':>9} {'max rel':>9}   "
        f"{'manual abs':>10} {'rel':>9} {'jax abs':>9} {'rel':>9} {'kinks':>5}",
    ]
    for leaf in report.leaves:
        shape = "x".join(str(n) for n in leaf.shape)
        lines.append(
            f"{leaf.layer:>5} {leaf.name:1} {shape:<12} "
            f"{leaf.grad_abs:9.2e} {leaf.grad_rel:9.2e}   "
            f"{leaf.manual_slope_abs:10.2e} {leaf.manual_slope_rel:9.2e} "
            f"{leaf.auto_slope_abs:9.2e} {leaf.auto_slope_rel:9.2e} {leaf.kinked:5d}"
        )
    verdict = "PASS" if report.passed else "FAIL"
    lines.append(
        f"{verdict} ({report.dtype}): largest relative error "
        f"{report.max_grad_rel:.2e} manual vs jax.grad (tolerance {tol.grad:g}), "
        f"{report.max_slope_rel:.2e} vs finite differences (tolerance {tol.slope:g})"
    )
    return "\n".join(lines)
