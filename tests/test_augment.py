"""Augmentation: the map's conventions, SciPy as reference, vmap and jit."""

from __future__ import annotations

import argparse
import gzip
import sys
import types
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
import scipy.stats
from scipy_map import scipy_warp

from mnist_jax.augment import (
    AugmentConfig,
    AugmentParams,
    augment_batch,
    augment_image,
    identity_params,
    sample_params,
    smooth,
)
from mnist_jax.commands import augment_preview
from mnist_jax.commands.augment_flags import add_augment_args, config_from_args
from mnist_jax.errors import MnistJaxError
from mnist_jax.preview import augmented_draws, preview_grid

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
NONE = AugmentConfig(rotate=0.0, shift=0.0, zoom=(1.0, 1.0))
EAGER_AND_JIT = pytest.mark.parametrize("transform", [lambda f, **_: f, jax.jit])
# "auto" is the compiled CPU kernel where it is installed (mnist_jax.warp).
SAMPLERS = pytest.mark.parametrize("sampler", ["auto", "jax"])


def read_test_images(n: int) -> np.ndarray:
    """Returns the first ``n`` MNIST test images, uint8 ``(n, 28, 28)``."""
    path = MNIST / "t10k-images-idx3-ubyte.gz"
    if not path.exists():
        pytest.skip(f"real MNIST is not at {path}")
    with gzip.open(path) as f:
        raw = f.read(16 + n * 784)
    return np.frombuffer(raw[16:], np.uint8).reshape(n, 28, 28)


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    """Four real digits as float32 ``(4, 28, 28)`` in [0, 1]."""
    return read_test_images(4).astype(np.float32) / 255.0


def random_image(seed: int = 0) -> np.ndarray:
    """Noise up to the border, where the boundary mode shows."""
    return np.random.default_rng(seed).random((28, 28)).astype(np.float32)


def params(angle, dy, dx, zoom, displacement=None) -> AugmentParams:
    return AugmentParams(
        jnp.array(angle, jnp.float32),
        jnp.array([dy, dx], jnp.float32),
        jnp.array(zoom, jnp.float32),
        displacement,
    )


def scipy_reference(image: np.ndarray, angle, dy, dx, zoom) -> np.ndarray:
    """The same map through ``scipy.ndimage.affine_transform``, in float64."""
    theta = np.deg2rad(angle)
    return scipy_warp(image, np.cos(theta) / zoom, np.sin(theta) / zoom, dy, dx)


def dot(y: int, x: int) -> jnp.ndarray:
    return jnp.zeros((28, 28)).at[y, x].set(1.0)


def ink_centre(image) -> np.ndarray:
    image = np.asarray(image)
    ys, xs = np.indices(image.shape)
    return np.array([(ys * image).sum(), (xs * image).sum()]) / image.sum()


# The map and its conventions.


@SAMPLERS
@EAGER_AND_JIT
def test_identity_parameters_return_the_input_exactly(transform, sampler, digits):
    image = jnp.asarray(digits[0])
    out = transform(augment_image, static_argnums=2)(image, identity_params(), sampler)
    np.testing.assert_array_equal(np.asarray(out), digits[0])


@SAMPLERS
@EAGER_AND_JIT
@pytest.mark.parametrize(
    "angle, dy, dx, zoom",
    [(20.0, 1.5, -2.0, 1.15), (-35.0, -0.7, 2.3, 0.85), (90.0, 0.0, 0.0, 1.0)],
)
def test_fixed_parameters_match_scipy_affine_transform(
    transform, sampler, digits, angle, dy, dx, zoom
):
    for image in (digits[1], random_image()):
        out = transform(augment_image, static_argnums=2)(
            jnp.asarray(image), params(angle, dy, dx, zoom), sampler
        )
        expected = scipy_reference(image, angle, dy, dx, zoom)
        np.testing.assert_allclose(np.asarray(out), expected, atol=1e-5)


def test_positive_angle_turns_counter_clockwise_on_screen():
    right_of_centre = dot(13, 20)  # a quarter turn takes it above the centre

    out = augment_image(right_of_centre, params(90.0, 0.0, 0.0, 1.0))

    np.testing.assert_allclose(ink_centre(out), [7.0, 13.0], atol=1e-4)


def test_positive_shift_moves_ink_down_and_right():
    out = augment_image(dot(10, 10), params(0.0, 2.0, 3.0, 1.0))

    np.testing.assert_allclose(np.asarray(out), np.asarray(dot(12, 13)), atol=1e-6)


def test_zoom_other_than_one_changes_the_image_and_scales_about_the_centre(digits):
    image = jnp.asarray(digits[0])
    bigger = augment_image(image, params(0.0, 0.0, 0.0, 1.2))
    smaller = augment_image(image, params(0.0, 0.0, 0.0, 0.8))

    assert np.abs(np.asarray(bigger) - digits[0]).max() > 0.5
    assert np.abs(np.asarray(smaller) - digits[0]).max() > 0.5
    # Ink mass scales with the area, s**2, up to blur at the edges.
    assert float(bigger.sum()) / digits[0].sum() == pytest.approx(1.44, rel=0.05)
    assert float(smaller.sum()) / digits[0].sum() == pytest.approx(0.64, rel=0.05)


@pytest.mark.shared
def test_ten_degree_rotation_keeps_the_ink_mass_of_a_real_digit(digits):
    for image in digits:
        out = augment_image(jnp.asarray(image), params(10.0, 0.0, 0.0, 1.0))
        assert float(out.sum()) == pytest.approx(image.sum(), rel=0.03)


# Batches, keys and the random draws.


def test_batch_vmap_equals_a_per_image_loop_and_jit_equals_eager(digits):
    config = AugmentConfig(elastic=(8.0, 3.0))
    key = jax.random.key(1)
    images = jnp.asarray(digits)

    eager = augment_batch(key, images, config)
    jitted = jax.jit(augment_batch, static_argnames="config")(key, images, config)
    keys = jax.random.split(key, len(digits))
    loop = [
        augment_image(x, sample_params(k, config))
        for k, x in zip(keys, images, strict=True)
    ]

    np.testing.assert_allclose(np.asarray(eager), np.stack(loop), atol=1e-6)
    # XLA fuses jitted code differently (e.g. sin, cos, fused multiply-adds).
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), atol=1e-5)


def test_a_jitted_step_with_a_fresh_key_each_step_compiles_once(digits):
    config = AugmentConfig()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(key, images):
        return augment_batch(key, images, config).sum()

    images = jnp.asarray(digits[:2].reshape(2, 784))
    sums = [float(step(jax.random.key(i), images)) for i in range(3)]

    assert len(set(sums)) == 3


def test_batch_keeps_shape_and_dtype_for_flat_and_square_images(digits):
    key = jax.random.key(2)
    flat = jnp.asarray(digits.reshape(4, 784))

    out_flat = augment_batch(key, flat, AugmentConfig())
    out_square = augment_batch(key, flat.reshape(4, 28, 28), AugmentConfig())

    assert out_flat.shape == (4, 784) and out_flat.dtype == jnp.float32
    np.testing.assert_array_equal(
        np.asarray(out_flat), np.asarray(out_square).reshape(4, 784)
    )


def test_batch_with_no_range_returns_the_input_exactly(digits):
    out = augment_batch(jax.random.key(3), jnp.asarray(digits), NONE)

    np.testing.assert_array_equal(np.asarray(out), digits)


def test_each_example_and_each_step_get_their_own_parameters():
    config = AugmentConfig()
    draw = jax.vmap(lambda k: sample_params(k, config))
    step_1 = draw(jax.random.split(jax.random.key(0), 8))
    step_2 = draw(jax.random.split(jax.random.key(1), 8))

    for field in ("angle", "zoom"):
        assert len(np.unique(np.asarray(getattr(step_1, field)))) == 8
        assert np.all(getattr(step_1, field) != getattr(step_2, field))
    assert np.all(step_1.shift != step_2.shift)


def test_draws_cover_their_ranges_uniformly():
    config = AugmentConfig(rotate=15.0, shift=2.0, zoom=(0.9, 1.1))
    keys = jax.random.split(jax.random.key(0), 10_000)
    drawn = jax.vmap(lambda k: sample_params(k, config))(keys)

    ranges = {
        "angle": (np.asarray(drawn.angle), -15.0, 15.0),
        "dy": (np.asarray(drawn.shift[:, 0]), -2.0, 2.0),
        "dx": (np.asarray(drawn.shift[:, 1]), -2.0, 2.0),
        "zoom": (np.asarray(drawn.zoom), 0.9, 1.1),
    }
    for name, (values, lo, hi) in ranges.items():
        width = hi - lo
        assert lo <= values.min() < lo + 0.01 * width, name
        assert hi - 0.01 * width < values.max() <= hi, name
        assert values.mean() == pytest.approx((lo + hi) / 2, abs=0.02 * width), name
        ks = scipy.stats.kstest(values, scipy.stats.uniform(lo, width).cdf)
        assert ks.pvalue > 1e-3, name


# Elastic distortion.


def test_smoothing_matches_scipy_gaussian_filter():
    noise = np.random.default_rng(0).uniform(-1, 1, (2, 28, 28)).astype(np.float32)

    out = smooth(jnp.asarray(noise), 3.0)

    for field, result in zip(noise, np.asarray(out), strict=True):
        expected = scipy.ndimage.gaussian_filter(
            field.astype(np.float64), 3.0, mode="constant", cval=0.0, truncate=4.0
        )
        np.testing.assert_allclose(result, expected, atol=1e-5)


def test_elastic_with_zero_alpha_is_the_identity(digits):
    config = AugmentConfig(rotate=0.0, shift=0.0, zoom=(1.0, 1.0), elastic=(0, 4))

    out = augment_batch(jax.random.key(4), jnp.asarray(digits), config)

    np.testing.assert_array_equal(np.asarray(out), digits)


def test_elastic_changes_the_image_and_stays_finite_in_range(digits):
    config = AugmentConfig(rotate=0.0, shift=0.0, zoom=(1.0, 1.0), elastic=(34, 4))

    out = np.asarray(augment_batch(jax.random.key(5), jnp.asarray(digits), config))

    assert np.all(np.isfinite(out))
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.all(np.abs(out - digits).max(axis=(1, 2)) > 0.3)


def test_elastic_adds_the_displacement_to_the_sampling_coordinates():
    image = jnp.asarray(random_image(1))
    displacement = jnp.zeros((2, 28, 28)).at[1].set(1.0)  # read one column right

    out = augment_image(image, params(0.0, 0.0, 0.0, 1.0, displacement))

    np.testing.assert_allclose(np.asarray(out[:, :-1]), np.asarray(image[:, 1:]))
    np.testing.assert_array_equal(np.asarray(out[:, -1]), 0.0)


# Flags.


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_augment_args(parser)
    return parser.parse_args(argv)


def test_flags_default_to_the_default_config():
    assert config_from_args(parse()) == AugmentConfig()
    assert config_from_args(parse("--no-augment")) is None


def test_flags_build_the_config_they_describe():
    args = parse("--rotate", "10", "--shift", "1", "--zoom", "0.8", "1.2")
    args_elastic = parse("--elastic", "34", "4")

    assert config_from_args(args) == AugmentConfig(10.0, 1.0, (0.8, 1.2))
    assert config_from_args(args_elastic) == AugmentConfig(elastic=(34.0, 4.0))
    hash(config_from_args(args_elastic))


@pytest.mark.parametrize(
    "argv, flag",
    [
        (("--rotate", "-1"), "--rotate"),
        (("--shift", "-0.5"), "--shift"),
        (("--shift", "nan"), "--shift"),
        (("--shift", "1000"), "--shift must be 0 to 28 pixels"),
        (("--rotate", "1e9"), "--rotate must be 0 to 180 degrees"),
        (("--zoom", "0", "1"), "--zoom"),
        (("--zoom", "1.2", "0.9"), "--zoom"),
        (("--elastic", "34", "0"), "--elastic"),
        (("--elastic", "-1", "4"), "--elastic"),
    ],
)
def test_impossible_flags_raise_one_line_errors_naming_the_flag(argv, flag):
    with pytest.raises(MnistJaxError, match=flag) as err:
        config_from_args(parse(*argv))
    assert "\n" not in str(err.value)


def test_batch_refuses_integer_images():
    with pytest.raises(MnistJaxError, match="float images"):
        augment_batch(jax.random.key(0), jnp.zeros((2, 784), jnp.uint8), NONE)


# The preview.


def test_preview_puts_originals_first_and_different_draws_after(digits):
    images = (digits[:2] * 255).round().astype(np.uint8).reshape(2, 784)

    grid = augmented_draws(images, jax.random.key(0), AugmentConfig(), draws=3)

    assert grid.shape == (2, 4, 28, 28)
    np.testing.assert_allclose(grid[:, 0], images.reshape(2, 28, 28) / 255.0)
    assert not np.allclose(grid[:, 1], grid[:, 2])


def test_preview_grid_writes_a_png(tmp_path, digits):
    images = (digits[:2] * 255).round().astype(np.uint8).reshape(2, 784)

    path = preview_grid(images, jax.random.key(0), NONE, 2, tmp_path / "g.png")

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_preview_command_reads_data_and_writes_the_grid(tmp_path, monkeypatch, digits):
    images = (digits * 255).round().astype(np.uint8).reshape(4, 784)

    def load_eval(spec, require_labels=True):
        assert require_labels is False
        return types.SimpleNamespace(images=images, labels=None, source=spec)

    fake = types.SimpleNamespace(load_eval=load_eval)
    monkeypatch.setitem(sys.modules, "mnist_jax.data", fake)
    monkeypatch.setattr("mnist_jax.data", fake, raising=False)
    parser = argparse.ArgumentParser()
    augment_preview.register(parser.add_subparsers())
    out = tmp_path / "grid.png"

    args = parser.parse_args(
        ["augment-preview", "--data", "x", "--out", str(out), "--count", "2",
         "--draws", "2", "--rotate", "0", "--shift", "0", "--zoom", "1", "1"]
    )  # fmt: skip

    assert args.func(args) == 0
    assert out.exists()
