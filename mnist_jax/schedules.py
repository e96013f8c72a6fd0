"""Learning-rate schedules: plain functions of the step count, as in Optax.

Each returns an ``optax.Schedule``: ``lr(step)`` for an integer step, usable
as ``optax.adam(learning_rate=schedule)``.
"""

from __future__ import annotations

import jax.numpy as jnp
import optax

from mnist_jax.errors import MnistJaxError

SCHEDULES = ("inverse-time", "exponential", "cosine", "constant")


def inverse_time_decay(
    init_value: float, decay_rate: float, transition_steps: int
) -> optax.Schedule:
    """Returns ``lr(t) = init_value / (1 + decay_rate * floor(t / transition_steps))``.

    The notebook's decay, without its compounding: the rate is a function of
    the step alone, never of the previous rate. Optax has no inverse-time
    schedule, so this one is written in its form.
    """
    if transition_steps < 1:
        raise MnistJaxError(f"decay steps must be at least 1, got {transition_steps}")

    def schedule(count):
        stage = jnp.floor_divide(count, transition_steps)
        return init_value / (1.0 + decay_rate * stage)

    return schedule


def make_schedule(
    name: str,
    lr: float,
    *,
    total_steps: int,
    decay_rate: float = 0.1,
    decay_steps: int = 1,
) -> optax.Schedule:
    """Returns the named schedule, starting at ``lr``.

    inverse-time: ``lr / (1 + decay_rate * floor(t / decay_steps))``.
    exponential: ``lr * (1 - decay_rate) ** floor(t / decay_steps)``, stepwise.
    cosine: from ``lr`` to 0 over ``total_steps``.
    constant: ``lr`` throughout.
    """
    if lr <= 0:
        raise MnistJaxError(f"learning rate must be positive, got {lr}")
    if name == "inverse-time":
        return inverse_time_decay(lr, decay_rate, decay_steps)
    if name == "exponential":
        if not 0.0 <= decay_rate < 1.0:
            raise MnistJaxError(
                f"exponential decay needs a rate in [0, 1), got {decay_rate}"
            )
        return optax.exponential_decay(
            lr,
            transition_steps=decay_steps,
            decay_rate=1.0 - decay_rate,
            staircase=True,
        )
    if name == "cosine":
        return optax.cosine_decay_schedule(lr, decay_steps=max(total_steps, 1))
    if name == "constant":
        return optax.constant_schedule(lr)
    raise MnistJaxError(
        f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}"
    )
