"""Optax's Adam and our schedules equal the notebook's formulas in NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mnist_jax import schedules

STEPS = [0, 99, 100, 101, 250, 1000]


def test_adam_equals_the_notebook_formulas_over_three_steps():
    lr, b1, b2, eps = 1e-2, 0.9, 0.999, 1e-8
    rng = np.random.default_rng(0)
    params = {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}
    grads = [
        {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}
        for _ in range(3)
    ]

    with jax.enable_x64(True):
        opt = optax.adam(lr, b1=b1, b2=b2, eps=eps)
        theirs = jax.tree.map(jnp.asarray, params)
        state = opt.init(theirs)
        for g in grads:
            updates, state = opt.update(jax.tree.map(jnp.asarray, g), state)
            theirs = optax.apply_updates(theirs, updates)

    ours = {k: v.copy() for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(x) for k, x in params.items()}
    for t, g in enumerate(grads, start=1):
        for k in ours:
            m[k] = b1 * m[k] + (1 - b1) * g[k]
            v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
            m_hat = m[k] / (1 - b1**t)
            v_hat = v[k] / (1 - b2**t)
            ours[k] = ours[k] - lr * m_hat / (np.sqrt(v_hat) + eps)

    for k in ours:
        np.testing.assert_allclose(theirs[k], ours[k], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_inverse_time_decay_is_the_closed_form_without_compounding(jit):
    lr, rate = 0.1, 0.5
    schedule = schedules.inverse_time_decay(lr, rate, 100)
    if jit:
        schedule = jax.jit(schedule)
    got = [float(schedule(t)) for t in STEPS]
    expected = [lr / (1 + rate * np.floor(t / 100)) for t in STEPS]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    # Compounding would give lr / (1 + rate)^10 at step 1000.
    assert got[-1] == pytest.approx(lr / 6, rel=1e-6)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("name", ["exponential", "cosine", "constant"])
def test_make_schedule_matches_numpy(name, jit):
    lr, rate, every, total = 0.1, 0.2, 100, 1000
    schedule = schedules.make_schedule(
        name, lr, total_steps=total, decay_rate=rate, decay_steps=every
    )
    if jit:
        schedule = jax.jit(schedule)
    t = np.array(STEPS, dtype=np.float64)
    expected = {
        "exponential": lr * (1 - rate) ** np.floor(t / every),
        "cosine": lr * 0.5 * (1 + np.cos(np.pi * np.minimum(t, total) / total)),
        "constant": np.full_like(t, lr),
    }[name]
    got = [float(schedule(int(s))) for s in STEPS]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-9)
