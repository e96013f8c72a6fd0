"""The hand-written backward pass agrees with jax.grad, and the check bites."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mnist_jax import backprop, gradcheck, model
from mnist_jax.errors import MnistJaxError

# Each example compiles a program for its shapes (~0.5 s of CPU each), so a
# modest count keeps the suite near a minute on two cores.
SETTINGS = settings(max_examples=15, deadline=None)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


@st.composite
def networks(draw):
    """Draws sizes (1 to 4 hidden layers of 1 to 64), batch, dropout, init."""
    hidden = draw(st.lists(st.integers(1, 64), min_size=1, max_size=4))
    sizes = (draw(st.integers(1, 64)), *hidden, draw(st.integers(2, 10)))
    return {
        "sizes": sizes,
        "batch": draw(st.integers(1, 257)),
        "keep_prob": draw(st.sampled_from([1.0, 0.8, 0.5])),
        "init": draw(st.sampled_from(model.INITS)),
        "padded": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**16)),
    }


def numpy_problem(seed, sizes, batch, init="he", dtype="float64"):
    """Returns a gradcheck.Problem drawn with NumPy, as init_params would.

    NumPy draws cost no compilation for each new shape, and the "rbg" key
    compiles dropout masks faster than the default threefry; the backward
    pass only needs the forward pass's masks, whatever drew them. Both keep
    the tests fast; the gradcheck command uses the default key.
    """
    rng = np.random.default_rng(seed)
    params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        scale = np.sqrt(2.0 / n_in) if init == "he" else 0.01
        w = scale * rng.standard_normal((n_in, n_out))
        params.append({"w": jnp.asarray(w, dtype), "b": jnp.zeros(n_out, dtype)})
    images = jnp.asarray(rng.integers(0, 256, (batch, sizes[0]), dtype=np.uint8))
    labels = jnp.asarray(rng.integers(0, sizes[-1], batch, dtype=np.int32))
    return gradcheck.Problem(params, images, labels, jax.random.key(seed, impl="rbg"))


def agreement(net, dtype):
    """Returns per-leaf (abs, rel) errors of manual against jax.grad."""
    problem = numpy_problem(net["seed"], net["sizes"], net["batch"], net["init"], dtype)
    weights = None
    if net["padded"]:
        rows = np.random.default_rng(net["seed"] + 1).random(net["batch"]) < 0.7
        weights = jnp.asarray(rows.astype(np.int32))
    return gradcheck.grad_agreement(
        problem, keep_prob=net["keep_prob"], weights=weights
    )


@SETTINGS
@given(net=networks())
def test_manual_matches_jax_grad_in_float64(net):
    with jax.enable_x64(True):
        errors = agreement(net, "float64")
    assert max(rel for _, rel in errors) <= 1e-10


@SETTINGS
@given(net=networks())
def test_manual_matches_jax_grad_in_float32(net):
    # The float32 tolerance and why it holds: gradcheck.TOLERANCES.
    errors = agreement(net, "float32")
    assert max(rel for _, rel in errors) <= gradcheck.TOLERANCES["float32"].grad


def test_manual_has_the_structure_jax_grad_returns(x64):
    problem = numpy_problem(0, (6, 5, 3), 4, init="he")
    args = (problem.params, problem.images, problem.labels)
    manual = backprop.manual_grads(*args, key=problem.key)
    auto = jax.grad(model.loss_fn)(*args, key=problem.key)
    chex.assert_trees_all_equal_shapes_and_dtypes(manual, auto)
    chex.assert_trees_all_close(manual, auto, rtol=1e-12, atol=1e-14)


def test_padded_rows_do_not_count(x64):
    problem = numpy_problem(1, (6, 5, 3), 5, init="he")
    weights = jnp.array([1, 1, 0, 1, 0])
    kept = jnp.array([0, 1, 3])
    padded = backprop.manual_grads(
        problem.params, problem.images, problem.labels, keep_prob=1.0, weights=weights
    )
    alone = backprop.manual_grads(
        problem.params, problem.images[kept], problem.labels[kept], keep_prob=1.0
    )
    chex.assert_trees_all_close(padded, alone, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    ("sizes", "batch", "keep_prob", "init", "padded"),
    [
        ((784, 30, 20, 10), 16, 0.8, "he", False),
        ((9, 16, 12, 8, 5), 33, 0.5, "small", True),
        ((5, 1, 3), 1, 1.0, "he", False),
    ],
)
def test_both_match_finite_differences_in_float64(
    x64, sizes, batch, keep_prob, init, padded
):
    problem = numpy_problem(3, sizes, batch, init)
    weights = (jnp.arange(batch) % 3 != 0).astype(jnp.int32) if padded else None
    report = gradcheck.check_gradients(
        problem,
        keep_prob=keep_prob,
        tolerances=gradcheck.TOLERANCES["float64"],
        weights=weights,
    )
    assert report.max_slope_rel <= 1e-6, gradcheck.format_report(report)
    assert report.passed


# Each classic mistake, as a replacement for one equation of the backward pass.
MISTAKES = {
    "tanh-derivative-for-relu": {"activation_grad": lambda z, a: 1.0 - a**2},
    "missing-1/keep_prob": {
        "undo_dropout": lambda da, mask, keep_prob: jnp.where(mask, da, 0.0)
    },
    "integer-labels-for-one-hot": {
        "one_hot": lambda labels, k, dtype: labels[:, None].astype(dtype)
    },
    "missing-1/m": {"example_count": lambda weights, batch, dtype: 1.0},
    "transposed-weight-gradient": {
        "weight_grad": lambda a_prev, dz, count: dz.T @ a_prev / count
    },
    "dropout-masks-left-out": {"undo_dropout": lambda da, mask, keep_prob: da},
}


@pytest.mark.parametrize("mistake", list(MISTAKES), ids=list(MISTAKES))
def test_check_fails_on_planted_mistake(x64, mistake):
    # Square layers, so even a transposed gradient has the right shape.
    problem = numpy_problem(4, (12, 12, 12, 12), 16, init="he")
    rules = backprop.RULES._replace(**MISTAKES[mistake])
    report = gradcheck.check_gradients(
        problem,
        keep_prob=0.5,
        tolerances=gradcheck.TOLERANCES["float64"],
        directions=1,
        rules=rules,
    )
    assert not report.passed
    assert report.max_grad_rel > 1e-3


def test_check_fails_on_transposed_gradient_of_another_shape(x64):
    problem = numpy_problem(4, (12, 9, 5), 8, init="he")
    rules = backprop.RULES._replace(**MISTAKES["transposed-weight-gradient"])
    report = gradcheck.check_gradients(
        problem,
        keep_prob=0.8,
        tolerances=gradcheck.TOLERANCES["float64"],
        directions=1,
        rules=rules,
    )
    assert not report.passed
    assert report.leaves[1].grad_rel == float("inf")  # layer 1 w, (12, 9)


def test_huge_logits_give_a_finite_loss_and_gradient():
    logits = jnp.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0]])
    labels = jnp.array([0, 0])
    loss, grad = jax.value_and_grad(model.cross_entropy)(logits, labels)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(loss, (0.0 + 2e4) / 2, rtol=1e-6)


def test_manual_grads_are_finite_for_huge_logits():
    problem = numpy_problem(5, (6, 4, 3), 4, dtype="float32")
    params = [*problem.params[:-1], {"w": problem.params[-1]["w"] * 1e5, "b": 0}]
    params[-1]["b"] = jnp.zeros(3)
    grads = backprop.manual_grads(params, problem.images, problem.labels)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("labels", [[0, 10], [-1, 3], [0.0, 1.0]])
def test_labels_outside_the_classes_are_rejected(labels):
    with pytest.raises(MnistJaxError):
        model.check_labels(np.array(labels))
    problem = numpy_problem(6, (6, 4, 10), 2, dtype="float32")
    with pytest.raises(MnistJaxError):
        backprop.manual_grads(problem.params, problem.images, jnp.array(labels))


def test_loss_and_gradients_do_not_retrace():
    problem = numpy_problem(7, (6, 5, 3), 8, dtype="float32")
    loss = jax.jit(chex.assert_max_traces(model.loss_fn, n=1))

    def loss_grad(*args, **kwargs):
        return jax.grad(model.loss_fn)(*args, **kwargs)

    grad = jax.jit(chex.assert_max_traces(loss_grad, n=1))
    manual = jax.jit(chex.assert_max_traces(backprop.manual_grads, n=1))
    for seed in range(3):
        images = jax.random.randint(jax.random.key(seed), (8, 6), 0, 256)
        key = jax.random.key(100 + seed)
        args = (problem.params, images.astype(jnp.uint8), problem.labels)
        for fn in (loss, grad, manual):
            jax.block_until_ready(fn(*args, key=key))
