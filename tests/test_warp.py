"""The compiled CPU warp kernel against the JAX sampler and SciPy."""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy_map import scipy_warp

from mnist_jax import augment, warp
from mnist_jax.augment import AugmentConfig, AugmentParams
from mnist_jax.errors import MnistJaxError

pytestmark = pytest.mark.skipif(
    not warp.available(),
    reason="the compiled warp kernel is not installed (no C++ compiler at install?)",
)
ISAS = warp.supported_isas() or ("best",)


def kernel_params(angle, dy, dx, zoom) -> np.ndarray:
    theta = np.deg2rad(angle)
    row = [np.cos(theta) / zoom, np.sin(theta) / zoom, dy, dx]
    return np.array(row, np.float32)


def random_batch(shape, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.random(shape, dtype=np.float32)
    count = int(np.prod(shape[:-2]))
    rows = [
        kernel_params(
            rng.uniform(-40, 40),
            rng.uniform(-3, 3),
            rng.uniform(-3, 3),
            rng.uniform(0.8, 1.2),
        )
        for _ in range(count)
    ]
    return images, np.stack(rows).reshape(*shape[:-2], 4)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape", [(5, 28, 28), (3, 7, 5), (2, 1, 1), (2, 40, 33)])
def test_each_loop_matches_scipy_on_any_image_size(isa, shape):
    # 7 x 5 and 40 x 33 leave a tail of pixels after the last full vector.
    images, p = random_batch(shape)

    out = np.asarray(warp.affine_warp(jnp.asarray(images), jnp.asarray(p), isa))

    for image, row, got in zip(images, p, out, strict=True):
        np.testing.assert_allclose(got, scipy_warp(image, *row), atol=1e-5)


@pytest.mark.parametrize("isa", ISAS)
def test_identity_returns_the_input_exactly(isa):
    images, _ = random_batch((3, 28, 28))
    identity = np.tile(np.array([1, 0, 0, 0], np.float32), (3, 1))

    out = warp.affine_warp(jnp.asarray(images), jnp.asarray(identity), isa)

    np.testing.assert_array_equal(np.asarray(out), images)


def test_the_loops_agree_and_match_the_jax_sampler():
    images, p = random_batch((64, 28, 28), seed=3)
    params = AugmentParams(
        jnp.asarray(np.rad2deg(np.arctan2(p[:, 1], p[:, 0]))),
        jnp.asarray(p[:, 2:]),
        jnp.asarray(1 / np.hypot(p[:, 0], p[:, 1])),
    )

    by_jax = jax.vmap(augment.augment_image, (0, 0, None))(
        jnp.asarray(images), params, "jax"
    )
    for isa in ISAS:
        out = warp.affine_warp(jnp.asarray(images), jnp.asarray(p), isa)
        np.testing.assert_allclose(np.asarray(out), np.asarray(by_jax), atol=1e-5)


def test_vmap_and_jit_equal_one_batched_call():
    images, p = random_batch((2, 6, 28, 28), seed=1)
    x, q = jnp.asarray(images), jnp.asarray(p)

    batched = warp.affine_warp(x, q)
    mapped = jax.vmap(jax.vmap(warp.affine_warp))(x, q)
    jitted = jax.jit(warp.affine_warp)(x, q)
    shared = jax.vmap(warp.affine_warp, (0, None))(x[0], q[0, 0])

    np.testing.assert_array_equal(np.asarray(mapped), np.asarray(batched))
    np.testing.assert_array_equal(np.asarray(jitted), np.asarray(batched))
    for k in range(6):
        one = warp.affine_warp(x[0, k], q[0, 0])
        np.testing.assert_array_equal(np.asarray(shared[k]), np.asarray(one))


def jax_warp(images: np.ndarray, p: np.ndarray) -> np.ndarray:
    """The kernel's map, coordinates and all, through the JAX sampler."""
    h, w = images.shape[-2:]
    cy, cx = (h - 1) / 2, (w - 1) / 2
    r, c = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    out = []
    for image, (a, b, dy, dx) in zip(images, p, strict=True):
        v, u = r - cy - dy, c - cx - dx
        coords = jnp.asarray(
            np.stack([cy + a * v + b * u, cx - b * v + a * u]), jnp.float32
        )
        out.append(np.asarray(augment.bilinear(jnp.asarray(image), coords)))
    return np.stack(out)


@pytest.mark.parametrize("isa", ISAS)
def test_wild_parameters_read_inside_the_image_and_match_the_jax_sampler(isa):
    # NaN, infinite and huge maps must neither crash nor read past the
    # image; a pixel whose source point is NaN is NaN, as in JAX.
    images, _ = random_batch((6, 28, 28))
    with np.errstate(invalid="ignore", over="ignore"):
        wild = np.array(
            [
                [np.nan, 0, 0, 0],
                [1, 0, np.inf, 0],
                [1e30, -1e30, 0, 0],
                [1, 0, -1e9, 1e9],
                [0, 0, 0, 0],
                [1, 1e-3, 0, -np.inf],
            ],
            np.float32,
        )
        expected = jax_warp(images, wild)

    out = np.asarray(warp.affine_warp(jnp.asarray(images), jnp.asarray(wild), isa))

    np.testing.assert_allclose(out, expected, atol=1e-5)  # NaN where NaN
    assert np.isnan(out[0]).all() and not np.isnan(out[2:5]).any()
    finite = out[np.isfinite(out)]
    assert (finite >= 0).all() and (finite <= 1).all()


def test_an_empty_batch_gives_an_empty_result():
    out = warp.affine_warp(jnp.zeros((0, 28, 28)), jnp.zeros((0, 4)))

    assert out.shape == (0, 28, 28)


def test_mismatched_params_unknown_loops_and_other_dtypes_are_refused():
    with pytest.raises(Exception, match="params"):
        warp.affine_warp(jnp.zeros((3, 28, 28)), jnp.zeros((2, 4))).block_until_ready()
    with pytest.raises(MnistJaxError, match="isa"):
        warp.affine_warp(jnp.zeros((1, 28, 28)), jnp.zeros((1, 4)), "sse9")
    for images, params in [
        (jnp.zeros((1, 28, 28), jnp.float16), jnp.zeros((1, 4))),
        (jnp.zeros((1, 28, 28), jnp.int32), jnp.zeros((1, 4))),
        (jnp.zeros((1, 28, 28)), jnp.zeros((1, 4), jnp.bfloat16)),
    ]:
        with pytest.raises(MnistJaxError, match="float32"):
            warp.affine_warp(images, params)


@pytest.mark.skipif(
    not warp.preferred(), reason="the kernel is not installed or the CPU has no AVX2"
)
def test_derivatives_through_the_kernel_are_the_jax_samplers():
    images, _ = random_batch((4, 28, 28), seed=5)
    x = jnp.asarray(images.reshape(4, 784))
    p = augment.batch_params(jax.random.key(3), 4, AugmentConfig())

    def loss(x, angle, sampler):
        out = augment.apply_batch(x, p._replace(angle=angle), sampler)
        return (out**2).sum()

    by_kernel = jax.grad(loss, argnums=(0, 1))(x, p.angle, "auto")
    by_jax = jax.grad(loss, argnums=(0, 1))(x, p.angle, "jax")

    # The primal outputs differ by float32 rounding, and the gradient of a
    # square carries them.
    np.testing.assert_allclose(by_kernel[0], by_jax[0], atol=1e-4)
    np.testing.assert_allclose(by_kernel[1], by_jax[1], rtol=1e-3, atol=1e-3)
    assert np.abs(np.asarray(by_jax[1])).max() > 0.1


@pytest.mark.skipif(
    not warp.preferred(), reason="the kernel is not installed or the CPU has no AVX2"
)
def test_a_jitted_augmentation_on_the_cpu_runs_the_kernel():
    images = jnp.zeros((8, 784))

    def run(sampler):
        return augment.augment_batch(
            jax.random.key(0), images, AugmentConfig(), sampler
        )

    text = jax.jit(run, static_argnums=0).lower("auto").compile().as_text()
    assert warp.TARGET in text
    assert warp.TARGET not in jax.jit(run, static_argnums=0).lower("jax").as_text()
    # Lowered for a GPU or TPU, the same function has no CPU kernel in it.
    traced = jax.jit(run, static_argnums=0).trace("auto")
    for platform in ("cuda", "tpu"):
        lowered = traced.lower(lowering_platforms=(platform,))
        assert warp.TARGET not in lowered.as_text()
    # Elastic distortion moves each pixel on its own: the JAX sampler runs it.
    elastic = AugmentConfig(elastic=(8.0, 3.0))
    lowered = jax.jit(lambda x: augment.augment_batch(jax.random.key(0), x, elastic))
    assert warp.TARGET not in lowered.lower(images).as_text()


def test_a_kernel_built_for_a_newer_jaxlib_is_left_unused(monkeypatch, caplog):
    fake = type(sys)("_mnist_jax_warp")
    fake.built_with_jaxlib = "99.0.0"
    monkeypatch.setitem(sys.modules, "_mnist_jax_warp", fake)

    assert warp._kernel.__wrapped__() is None
    assert "built for jaxlib 99.0.0" in caplog.text
    assert warp._release("0.10.2") < warp._release("0.11.0rc1")
