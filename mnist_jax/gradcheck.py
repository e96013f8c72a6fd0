"""Three-way gradient check: the manual backward pass, jax.grad, and slopes.

For every parameter leaf (each layer's ``w`` and ``b``) it compares

- ``manual_grads`` with ``jax.grad`` of the jitted loss, by the relative
  error ``max|manual - auto| / max(max|auto|, tiny)``: the worst entry,
  measured against the largest entry of the reference gradient;
- both with central finite differences along a few random unit directions
  ``d`` on that leaf: ``(L(p + h d) - L(p - h d)) / 2h`` against ``<g, d>``,
  with relative error ``|slope - <g, d>| / max(|auto|_2, tiny)``, the error
  measured against the steepest slope a unit direction could show.

``tiny`` is the smallest normal number of the dtype, so a leaf whose gradient
is exactly zero does not divide by zero.
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
from mnist_jax.backprop import RULES, Rules, manual_grads
from mnist_jax.errors import MnistJaxError
from mnist_jax.model import Params

Array = jax.Array


@dataclass(frozen=True)
class Tolerances:
    """Largest relative errors that pass, and the finite-difference step."""

    grad: float  # manual against jax.grad
    slope: float  # either gradient against finite differences
    step: float  # h, along a unit direction


TOLERANCES = {
    # Manual and automatic differentiation do the same arithmetic in another
    # order, so in float64 they agree to a few ulps (~1e-16). Central
    # differences err by ~h²·L''' + eps·L/h, near 1e-10 at h = 1e-5.
    "float64": Tolerances(grad=1e-10, slope=1e-6, step=1e-5),
    # float32 has eps ~ 1.2e-7. Each gradient entry is a sum over the batch
    # of products through every layer, and rounding differs between the two
    # orders of summation: we see up to ~1e-6 relative for four hidden
    # layers and batches of 257, so 1e-4 leaves a hundredfold margin and
    # still fails any wrong equation, whose errors are of order 1e-2 or more.
    # The loss of ~2.3 is known to ~2e-7, so slopes at h = 1e-2 carry
    # ~1e-5 of rounding plus a kink now and then where h crosses a ReLU.
    "float32": Tolerances(grad=1e-4, slope=1e-2, step=1e-2),
}


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
    slopes: Array  # (K,) central differences along the directions
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
    kwargs = {"key": key, "keep_prob": keep_prob, "weights": weights}
    manual = jax.tree.leaves(
        manual_grads(params, images, labels, rules=rules, **kwargs)
    )
    auto = jax.tree.leaves(jax.grad(model.loss)(params, images, labels, **kwargs))
    leaves = jax.tree.leaves(params)
    dirs = unit_directions(dir_key, directions, leaves)
    slopes = central_slopes(params, dirs, step, images, labels, **kwargs)

    out = []
    for i, (g_manual, g_auto) in enumerate(zip(manual, auto, strict=True)):
        auto_inner = jnp.tensordot(dirs[i], g_auto, axes=g_auto.ndim)
        if g_manual.shape == g_auto.shape:
            grad_abs = jnp.abs(g_manual - g_auto).max(initial=0.0)
            manual_inner = jnp.tensordot(dirs[i], g_manual, axes=g_auto.ndim)
        else:
            grad_abs = jnp.asarray(jnp.inf, g_auto.dtype)
            manual_inner = jnp.full_like(auto_inner, jnp.nan)
        auto_max = jnp.abs(g_auto).max(initial=0.0)
        auto_norm = jnp.sqrt(jnp.sum(g_auto**2))
        leaf_slopes = slopes[i * directions : (i + 1) * directions]
        out.append(
            LeafMeasures(
                grad_abs, auto_max, auto_norm, leaf_slopes, manual_inner, auto_inner
            )
        )
    return out


def central_slopes(
    params: Params, dirs: list[Array], step: float, *args, **kwargs
) -> Array:
    """Returns ``(L(p + h d) - L(p - h d)) / 2h`` for every direction, flat.

    dirs: per leaf (``jax.tree.leaves`` order) ``(K, *leaf.shape)``; each
    direction moves its own leaf only. The result is ``(n_leaves * K,)``,
    leaf by leaf. All shifted losses run as one vmapped ``model.loss_fn``;
    args and kwargs are the loss's own.
    """
    leaves, treedef = jax.tree.flatten(params)
    count = sum(d.shape[0] for d in dirs)
    if count == 0:
        return jnp.zeros((0,), leaves[0].dtype)

    # Row r of every stacked leaf is zero except on the leaf direction r moves.
    stacked, start = [], 0
    for leaf, d in zip(leaves, dirs, strict=True):
        rows = jnp.zeros((count, *leaf.shape), leaf.dtype)
        stacked.append(rows.at[start : start + d.shape[0]].set(d))
        start += d.shape[0]

    def slope(shift: list[Array]) -> Array:
        def loss_at(sign: float) -> Array:
            moved = [p + sign * step * s for p, s in zip(leaves, shift, strict=True)]
            tree = jax.tree.unflatten(treedef, moved)
            return model.loss_fn(tree, *args, **kwargs)

        return (loss_at(1.0) - loss_at(-1.0)) / (2 * step)

    return jax.vmap(slope)(stacked)


def relative(err: float, scale: float, dtype: Any) -> float:
    """Returns ``err / max(scale, tiny)``; tiny is the dtype's smallest normal."""
    return float(err) / max(float(scale), float(jnp.finfo(dtype).tiny))


def grad_agreement(
    problem: Problem,
    *,
    keep_prob: float,
    weights: Array | None = None,
    rules: Rules = RULES,
) -> list[tuple[float, float]]:
    """Returns ``(max abs, relative)`` error of manual against jax.grad per leaf.

    The relative error is ``max|manual - auto| / max(max|auto|, tiny)``.
    """
    measures = measure(
        problem,
        weights,
        problem.key,
        keep_prob=keep_prob,
        rules=rules,
        directions=0,
        step=1.0,
    )
    dtype = problem.params[0]["w"].dtype
    return [
        (float(m.grad_abs), relative(m.grad_abs, m.auto_max, dtype)) for m in measures
    ]


def _worst_slope_error(slopes: np.ndarray, inner: np.ndarray) -> float:
    """Returns ``max |slope - <g, d>|`` over directions (inf for any nan)."""
    err = np.abs(slopes - inner)
    return float("inf") if np.isnan(err).any() else float(err.max())


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
        raise MnistJaxError(f"keep_prob must be in (0, 1], got {keep_prob}")
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
    checks = []
    for path, m, leaf in zip(
        paths, measures, jax.tree.leaves(problem.params), strict=True
    ):
        manual_slope = _worst_slope_error(m.slopes, m.manual_inner)
        auto_slope = _worst_slope_error(m.slopes, m.auto_inner)
        checks.append(
            LeafCheck(
                layer=path[0].idx + 1,
                name=path[1].key,
                shape=tuple(leaf.shape),
                grad_abs=float(m.grad_abs),
                grad_rel=relative(m.grad_abs, m.auto_max, dtype),
                manual_slope_abs=manual_slope,
                manual_slope_rel=relative(manual_slope, m.auto_norm, dtype),
                auto_slope_abs=auto_slope,
                auto_slope_rel=relative(auto_slope, m.auto_norm, dtype),
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
        f"{'manual abs':>10} {'rel':>9} {'jax abs':>9} {'rel':>9}",
    ]
    for leaf in report.leaves:
        shape = "x".join(str(n) for n in leaf.shape)
        lines.append(
            f"{leaf.layer:>5} {leaf.name:1} {shape:<12} "
            f"{leaf.grad_abs:9.2e} {leaf.grad_rel:9.2e}   "
            f"{leaf.manual_slope_abs:10.2e} {leaf.manual_slope_rel:9.2e} "
            f"{leaf.auto_slope_abs:9.2e} {leaf.auto_slope_rel:9.2e}"
        )
    verdict = "PASS" if report.passed else "FAIL"
    lines.append(
        f"{verdict} ({report.dtype}): largest relative error "
        f"{report.max_grad_rel:.2e} manual vs jax.grad (tolerance {tol.grad:g}), "
        f"{report.max_slope_rel:.2e} vs finite differences (tolerance {tol.slope:g})"
    )
    return "\n".join(lines)
