"""Random rotation, shift, zoom and elastic distortion of digits, on the device.

Conventions. Pixel ``(row, col)`` sits at the point ``p = (y, x)``, with
``y`` growing downwards and ``x`` to the right; the centre of an ``h x w``
image is ``c = ((h - 1) / 2, (w - 1) / 2)``, ``(13.5, 13.5)`` for MNIST.
An augmentation moves ink from input point ``i`` to output point

    o = c + A (i - c) + t,    A = s R(θ),    R(θ) = [[cos θ, -sin θ],
                                                     [sin θ,  cos θ]],

so positive ``θ`` turns the digit counter-clockwise on screen, ``t = (dy, dx)``
moves it down and to the right, and ``s > 1`` makes it bigger. Each output
pixel ``o`` is read from the input at

    i(o) = c + A⁻¹ (o - c - t) + d(o),    A⁻¹ = R(-θ) / s,

where ``d`` is the optional elastic displacement, in input pixels. The whole
map is resampled once, with bilinear interpolation. Outside the image the
input counts as 0, the MNIST background, interpolated towards the edge
pixels (SciPy calls this ``mode="grid-constant"``); ink that leaves the
frame is lost and the uncovered border is blank.

On the CPU the resampling runs in a compiled kernel where the package was
built with it (``mnist_jax.warp``); elsewhere, and for elastic distortion,
in JAX (``bilinear``). The single-image functions (``sample_params``,
``augment_image``) are pure and traceable; ``augment_batch`` vmaps them
with one key per example, so it can run inside a jitted training step with
a fresh key every step.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from mnist_jax import warp
from mnist_jax.errors import MnistJaxError

Array = jax.Array

MNIST_SHAPE: tuple[int, ...] = (28, 28)


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random parameters; hashable, so a static jit argument.

    rotate: θ ~ U(-rotate, rotate), in degrees.
    shift: dy, dx ~ U(-shift, shift) each, in pixels.
    zoom: s ~ U(lo, hi), a scale factor.
    elastic: ``(alpha, sigma)``: uniform noise in [-1, 1] per pixel and axis,
    smoothed by a Gaussian of std ``sigma`` pixels and scaled by ``alpha``;
    ``None`` for no elastic distortion.
    """

    rotate: float = 15.0
    shift: float = 2.0
    zoom: tuple[float, float] = (0.9, 1.1)
    elastic: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        zoom = tuple(float(z) for z in self.zoom)
        elastic = None if self.elastic is None else tuple(map(float, self.elastic))
        object.__setattr__(self, "rotate", float(self.rotate))
        object.__setattr__(self, "shift", float(self.shift))
        object.__setattr__(self, "zoom", zoom)
        object.__setattr__(self, "elastic", elastic)
        check_config(self)


def check_config(config: AugmentConfig) -> None:
    """Raises ``MnistJaxError`` unless every range in ``config`` makes sense."""
    # Past these a draw turns the digit round more than once, or moves it
    # off a 28-pixel image altogether.
    if not (math.isfinite(config.rotate) and 0 <= config.rotate <= 180):
        raise MnistJaxError(f"--rotate must be 0 to 180 degrees, got {config.rotate}")
    if not (math.isfinite(config.shift) and 0 <= config.shift <= 28):
        raise MnistJaxError(f"--shift must be 0 to 28 pixels, got {config.shift}")

    if len(config.zoom) != 2:
        raise MnistJaxError(f"--zoom needs two numbers LO HI, got {config.zoom}")
    lo, hi = config.zoom
    if not (math.isfinite(hi) and 0 < lo <= hi):
        raise MnistJaxError(f"--zoom needs 0 < LO <= HI, got LO={lo} HI={hi}")

    if config.elastic is None:
        return
    if len(config.elastic) != 2:
        raise MnistJaxError(f"--elastic needs ALPHA SIGMA, got {config.elastic}")
    alpha, sigma = config.elastic
    # Past these bounds the field is either all smoothing (a 28-pixel image)
    # or throws every pixel off the image; the caps also bound memory.
    if not (math.isfinite(alpha) and 0 <= alpha <= 1000):
        raise MnistJaxError(f"--elastic needs ALPHA in 0..1000, got ALPHA={alpha}")
    if not (math.isfinite(sigma) and 0 < sigma <= 100):
        raise MnistJaxError(
            f"--elastic needs SIGMA in (0, 100] pixels, got SIGMA={sigma}"
        )


class AugmentParams(NamedTuple):
    """The parameters of one image's augmentation (a pytree; vmap adds a batch axis).

    angle: θ in degrees, ``()``. shift: ``(dy, dx)`` in pixels, ``(2,)``.
    zoom: ``s``, ``()``. displacement: ``d``, ``(2, h, w)`` in pixels
    (row then column component), or ``None`` for none.
    """

    angle: Array
    shift: Array
    zoom: Array
    displacement: Array | None = None


def identity_params(shape: tuple[int, ...] | None = None) -> AugmentParams:
    """Returns parameters that leave an image unchanged; ``shape`` adds d = 0."""
    displacement = None if shape is None else jnp.zeros((2, *shape))
    return AugmentParams(jnp.array(0.0), jnp.zeros(2), jnp.array(1.0), displacement)


def gaussian_matrix(n: int, sigma: float) -> np.ndarray:
    """Returns ``G`` ``(n, n)`` with ``G @ f`` = ``f`` smoothed along axis 0.

    The kernel is a normalised Gaussian of std ``sigma``, cut at 4 sigma, and
    the signal is taken as 0 outside ``0..n-1`` (SciPy's ``gaussian_filter``
    with ``mode="constant"``). A matrix is built on the host because ``sigma``
    is static; ``G @ f @ G.T`` is then the separable 2-D filter.
    """
    radius = int(4.0 * sigma + 0.5)
    taps = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (taps / sigma) ** 2)
    kernel /= kernel.sum()

    offsets = np.arange(n)[None, :] - np.arange(n)[:, None]
    inside = np.abs(offsets) <= radius
    return np.where(inside, kernel[np.clip(offsets + radius, 0, 2 * radius)], 0.0)


def smooth(fields: Array, sigma: float) -> Array:
    """Returns ``fields`` ``(..., h, w)`` smoothed by a Gaussian of std ``sigma``."""
    h, w = fields.shape[-2:]
    rows = jnp.asarray(gaussian_matrix(h, sigma), fields.dtype)
    cols = jnp.asarray(gaussian_matrix(w, sigma), fields.dtype)
    # HIGHEST: accelerators may otherwise multiply float32 in reduced precision.
    highest = jax.lax.Precision.HIGHEST
    out = jnp.einsum("ij,...jw->...iw", rows, fields, precision=highest)
    return jnp.einsum("...hj,wj->...hw", out, cols, precision=highest)


def sample_params(
    key: Array, config: AugmentConfig, shape: tuple[int, ...] = MNIST_SHAPE
) -> AugmentParams:
    """Returns one image's random parameters, drawn from the ranges in ``config``.

    shape: ``(h, w)`` of the image, for the elastic displacement field.
    θ, dy, dx and s come from one draw of four numbers, each over its own
    range: one random-number kernel rather than four, which took about 1 s
    off compiling a training step on the CPU.
    """
    lo, hi = config.zoom
    low = jnp.array([-config.rotate, -config.shift, -config.shift, lo])
    high = jnp.array([config.rotate, config.shift, config.shift, hi])
    drawn = jax.random.uniform(key, (4,), minval=low, maxval=high)
    angle, shift, zoom = drawn[0], drawn[1:3], drawn[3]

    displacement = None
    if config.elastic is not None:
        alpha, sigma = config.elastic
        noise = jax.random.uniform(
            jax.random.fold_in(key, 1), (2, *shape), minval=-1.0, maxval=1.0
        )
        displacement = alpha * smooth(noise, sigma)
    return AugmentParams(angle, shift, zoom, displacement)


def inverse_rotation(params: AugmentParams) -> tuple[Array, Array]:
    """Returns ``(cos θ / s, sin θ / s)``: ``A⁻¹ = [[a, b], [-b, a]]``."""
    theta = jnp.deg2rad(params.angle)
    return jnp.cos(theta) / params.zoom, jnp.sin(theta) / params.zoom


def source_coordinates(params: AugmentParams, shape: tuple[int, ...]) -> Array:
    """Returns ``i(o)`` ``(2, h, w)``: where each output pixel reads the input.

    Written out element by element rather than as a matrix product, so that
    no accelerator rounds the coordinates to a lower precision.
    """
    h, w = shape
    dtype = jnp.result_type(params.angle, jnp.float32)
    y, x = jnp.meshgrid(
        jnp.arange(h, dtype=dtype), jnp.arange(w, dtype=dtype), indexing="ij"
    )
    cy, cx = (h - 1) / 2, (w - 1) / 2
    v = y - cy - params.shift[0]
    u = x - cx - params.shift[1]

    a, b = inverse_rotation(params)
    coords = jnp.stack([cy + a * v + b * u, cx - b * v + a * u])
    if params.displacement is not None:
        coords = coords + params.displacement
    return coords


def augment_image(image: Array, params: AugmentParams, sampler: str = "auto") -> Array:
    """Returns ``image`` ``(h, w)`` rotated, shifted, zoomed and displaced.

    One bilinear resampling of the map in the module docstring, with 0
    outside the image. Identity parameters return a finite input exactly.
    sampler: ``"auto"`` runs the compiled kernel (``mnist_jax.warp``) for a
    float32 image without displacement on the CPU, where it is installed
    and the CPU has AVX2, and the JAX sampler (``bilinear``) otherwise;
    ``"jax"`` always runs the JAX sampler. The two agree to float32
    rounding of the coordinates, and have the same derivatives (the JAX
    sampler's).
    """
    if sampler not in ("auto", "jax"):
        raise MnistJaxError(f"sampler must be 'auto' or 'jax', got {sampler!r}")
    if (
        sampler == "jax"
        or params.displacement is not None
        or image.dtype != jnp.float32
        or not warp.preferred()
    ):
        return _with_jax(image, params)
    return lax.platform_dependent(image, params, cpu=_with_kernel, default=_with_jax)


def _with_jax(image: Array, params: AugmentParams) -> Array:
    coords = source_coordinates(params, image.shape)
    return bilinear(image, coords).astype(image.dtype)


@jax.custom_jvp
def _with_kernel(image: Array, params: AugmentParams) -> Array:
    return warp.affine_warp(image, warp_params(params))


@_with_kernel.defjvp
def _with_kernel_jvp(primals, tangents):
    # The kernel has no derivative of its own; the JAX sampler's is the
    # derivative of the same map.
    _, tangent = jax.jvp(_with_jax, primals, tangents)
    return _with_kernel(*primals), tangent


def warp_params(params: AugmentParams) -> Array:
    """Returns ``(cos θ / s, sin θ / s, dy, dx)`` float32, ``(4,)``: the kernel's."""
    a, b = inverse_rotation(params)
    return jnp.stack([a, b, params.shift[0], params.shift[1]]).astype(jnp.float32)


def bilinear(image: Array, coords: Array) -> Array:
    """Returns ``image`` ``(h, w)`` read at ``coords`` ``(2, ...)``, bilinearly.

    Outside the image the input counts as 0 (SciPy's ``grid-constant``). The
    image gets a border of zeros (one row and column before, two after), the
    coordinates are clipped to ``[-1, n]``, where the value is 0 already,
    and the four neighbours are read with unchecked gathers from the flat
    padded image. In a jitted training step on the CPU this took 2-7 % less
    time than ``jax.scipy.ndimage.map_coordinates``, which checks every
    neighbour against the image's bounds.
    """
    h, w = image.shape
    width = w + 3
    padded = jnp.zeros((h + 3, width), image.dtype)
    padded = lax.dynamic_update_slice(padded, image, (1, 1)).reshape(-1)

    y = jnp.clip(coords[0], -1.0, float(h))
    x = jnp.clip(coords[1], -1.0, float(w))
    y0, x0 = jnp.floor(y), jnp.floor(x)
    fy, fx = y - y0, x - x0
    top_left = (y0.astype(jnp.int32) + 1) * width + x0.astype(jnp.int32) + 1

    def read(offset: int) -> Array:
        index = (top_left + offset)[..., None]
        dims = lax.GatherDimensionNumbers(
            offset_dims=(), collapsed_slice_dims=(0,), start_index_map=(0,)
        )
        mode = lax.GatherScatterMode.PROMISE_IN_BOUNDS
        return lax.gather(padded, index, dims, (1,), mode=mode)

    top = read(0) * (1 - fx) + read(1) * fx
    bottom = read(width) * (1 - fx) + read(width + 1) * fx
    return top * (1 - fy) + bottom * fy


def augment_batch(
    key: Array, images: Array, config: AugmentConfig, sampler: str = "auto"
) -> Array:
    """Returns ``images`` with each example augmented by its own random draw.

    images: float in [0, 1], ``(m, 784)`` (taken as 28 x 28) or ``(m, h, w)``;
    the result has the same shape and dtype. Example ``j`` uses
    ``jax.random.split(key, m)[j]``, so pass a fresh key every step.
    sampler: as in ``augment_image``.
    """
    shape = image_shape(images)
    return apply_batch(images, batch_params(key, len(images), config, shape), sampler)


def batch_params(
    key: Array, m: int, config: AugmentConfig, shape: tuple[int, ...] = MNIST_SHAPE
) -> AugmentParams:
    """Returns ``m`` examples' parameters, each with a batch axis of ``m``.

    Example ``j``'s come from ``jax.random.split(key, m)[j]``, as in
    ``augment_batch``; drawing them apart from the images lets a training
    chunk draw all its steps' parameters at once.
    """
    keys = jax.random.split(key, m)
    return jax.vmap(lambda k: sample_params(k, config, shape))(keys)


def apply_batch(images: Array, params: AugmentParams, sampler: str = "auto") -> Array:
    """Returns ``images`` ``(m, 784)`` or ``(m, h, w)`` augmented by ``params``.

    params: one ``AugmentParams`` with a batch axis of ``m``.
    """
    shape = image_shape(images)
    squares = images.reshape(len(images), *shape)
    out = jax.vmap(augment_image, (0, 0, None))(squares, params, sampler)
    return out.reshape(images.shape)


def image_shape(images: Array) -> tuple[int, ...]:
    """Returns ``(h, w)`` of a float batch ``(m, 784)`` or ``(m, h, w)``."""
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise MnistJaxError(
            f"augmentation needs float images in [0, 1], got {images.dtype}; "
            "scale uint8 pixels by 1/255 first"
        )
    if images.ndim == 2 and images.shape[1] == math.prod(MNIST_SHAPE):
        return MNIST_SHAPE
    if images.ndim == 3:
        return tuple(images.shape[1:])
    raise MnistJaxError(
        f"augmentation needs images (m, 784) or (m, h, w), got {images.shape}"
    )
