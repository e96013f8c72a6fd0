"""Many models at once: seeds × learning rates trained in one compiled program.

Model ``m`` is a pair ``(seed_m, lr_m)``. Its state is a ``TrainState`` and
the ``M`` states are stacked along a leading axis of every leaf, except
``step``, which all models share. One ``jax.vmap`` over that axis runs all
``M`` training steps as batched array operations inside the same
``lax.scan`` as a single run's chunk.

Each model is the single run with its seed: its parameters, dropout masks,
augmentation draws and data order come from ``jax.random.key(seed_m)``
exactly as in ``train.init_state`` and ``train.fit`` (data order is per
model, not shared). Its learning rate is ``lr_m · schedule₁(t)``, the
configured schedule started at 1, so the rate is a traced per-model number;
it equals the single run's ``schedule(t)`` up to the rounding of that
product. On one device the models match single runs to float tolerance.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mnist_jax import model
from mnist_jax.errors import MnistJaxError
from mnist_jax.schedules import make_schedule
from mnist_jax.train import (
    EpochResult,
    TrainConfig,
    TrainState,
    accuracy,
    epoch_order,
    make_train_step,
    steps_per_epoch,
)

log = logging.getLogger(__name__)

Array = jax.Array

# vmap axes of a stacked state: every leaf has the model axis but the step.
STATE_AXES = TrainState(params=0, opt_state=0, step=None, key=0, stats=0)  # type: ignore[arg-type]


class Member(NamedTuple):
    """One model of a many-model run: its seed and initial learning rate."""

    seed: int
    lr: float


def grid(seeds: Sequence[int], lrs: Sequence[float]) -> list[Member]:
    """Returns every ``(seed, lr)`` pair, seed-major: all lrs of ``seeds[0]`` first."""
    if not seeds or not lrs:
        raise MnistJaxError("a many-model run needs at least one seed and one lr")
    bad = [lr for lr in lrs if not (math.isfinite(lr) and lr > 0)]
    if bad:
        raise MnistJaxError(f"learning rates must be positive, got {bad[0]}")
    members = [Member(int(s), float(lr)) for s, lr in itertools.product(seeds, lrs)]
    if len(set(members)) != len(members):
        raise MnistJaxError("the seeds or learning rates repeat; give each once")
    return members


@dataclass(frozen=True)
class Spread:
    """Mean, standard deviation (ddof 0), minimum and maximum of some values."""

    mean: float
    std: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        """Returns the spread of ``values`` (at least one)."""
        arr = np.asarray(values, np.float64)
        return cls(
            float(arr.mean()), float(arr.std()), float(arr.min()), float(arr.max())
        )

    def __str__(self) -> str:
        return (
            f"{self.mean:.4f} ± {self.std:.4f} (min {self.min:.4f}, max {self.max:.4f})"
        )


def unit_schedule(config: TrainConfig, n_train: int) -> optax.Schedule:
    """Returns the configured schedule started at 1: ``schedule₁(t)``."""
    per_epoch = steps_per_epoch(n_train, config.batch_size)
    return make_schedule(
        config.schedule,
        1.0,
        total_steps=per_epoch * config.epochs,
        decay_rate=config.decay_rate,
        decay_steps=config.decay_steps or per_epoch,
    )


def member_optimizer(
    config: TrainConfig, unit: optax.Schedule, lr: Array | float
) -> optax.GradientTransformation:
    """Returns ``train.make_optimizer``'s Adam with the rate ``lr · unit(t)``.

    lr: a scalar, traced under ``vmap``; the state records the applied rate
    under ``hyperparams["learning_rate"]`` as a single run's does.
    """
    return optax.inject_hyperparams(optax.adam)(
        learning_rate=lambda count: lr * unit(count),
        b1=config.b1,
        b2=config.b2,
        eps=config.eps,
    )


def init_many(
    config: TrainConfig, n_train: int, members: Sequence[Member]
) -> TrainState:
    """Returns the stacked step-0 state of ``members`` (model axis first)."""
    unit = unit_schedule(config, n_train)

    def init_one(seed: Array, lr: Array) -> TrainState:
        # The same keys as train.init_state, for the same parameters.
        init_key, run_key = jax.random.split(jax.random.key(seed))
        params = model.init_params(init_key, config.sizes, config.init)
        opt_state = member_optimizer(config, unit, lr).init(params)
        stats = jnp.zeros((3,), jnp.float32)
        return TrainState(params, opt_state, jnp.zeros((), jnp.int32), run_key, stats)

    seeds = jnp.asarray([m.seed for m in members], jnp.int32)
    lrs = jnp.asarray([m.lr for m in members], jnp.float32)
    return jax.vmap(init_one, out_axes=STATE_AXES)(seeds, lrs)


def member_state(states: TrainState, m: int) -> TrainState:
    """Returns model ``m`` of a stacked state as an ordinary single-model state."""
    params, opt_state, key, stats = jax.tree.map(
        lambda leaf: leaf[m],
        (states.params, states.opt_state, states.key, states.stats),
    )
    return TrainState(params, opt_state, states.step, key, stats)


def many_orders(keys: Array, epoch: int, n_train: int, batch_size: int) -> Array:
    """Returns each model's epoch order, ``(M, steps_per_epoch * batch_size)``."""
    return jax.vmap(lambda key: epoch_order(key, epoch, n_train, batch_size))(keys)


ManyRunner = Callable[[TrainState, Array, Array, Array, Array], TrainState]


def make_many_runner(config: TrainConfig, n_train: int) -> ManyRunner:
    """Returns a jitted ``run(states, lrs, images, labels, orders) -> states``.

    ``train.make_chunk_runner`` for ``M`` models: up to ``chunk_steps`` steps
    of the current epoch, each a vmapped step of every model on its own
    batch. lrs: ``(M,)`` float32; orders: ``(M, steps_per_epoch * B)``.
    """
    per_epoch = steps_per_epoch(n_train, config.batch_size)
    batch = config.batch_size
    unit = unit_schedule(config, n_train)

    def member_step(state: TrainState, lr, images, labels, weights) -> TrainState:
        step = make_train_step(config, member_optimizer(config, unit, lr))
        return step(state, images, labels, weights)[0]

    all_steps = jax.vmap(
        member_step, in_axes=(STATE_AXES, 0, 0, 0, 0), out_axes=STATE_AXES
    )

    def body(states: TrainState, _, lrs, images, labels, orders, end):
        def run(s: TrainState) -> TrainState:
            start = (s.step % per_epoch) * batch
            idx = jax.lax.dynamic_slice_in_dim(orders, start, batch, axis=1)
            weights = (idx >= 0).astype(jnp.float32)
            idx = jnp.maximum(idx, 0)
            return all_steps(s, lrs, images[idx], labels[idx], weights)

        # The step is shared, so this stays a real branch under vmap.
        return jax.lax.cond(states.step < end, run, lambda s: s, states), None

    @partial(jax.jit, donate_argnums=(0,))
    def run_chunk(states: TrainState, lrs, images, labels, orders) -> TrainState:
        end = (states.step // per_epoch + 1) * per_epoch
        scan_body = partial(
            body, lrs=lrs, images=images, labels=labels, orders=orders, end=end
        )
        states, _ = jax.lax.scan(scan_body, states, None, length=config.chunk_steps)
        return states

    return run_chunk


def _epoch_results(
    states: TrainState,
    members: Sequence[Member],
    epoch: int,
    seconds: float,
    evaluate: Callable[[model.Params], float],
) -> list[EpochResult]:
    stats = np.asarray(states.stats, np.float64)
    rates = np.asarray(states.opt_state.hyperparams["learning_rate"])
    results = []
    for m, member in enumerate(members):
        loss_sum, correct, count = stats[m]
        if not math.isfinite(loss_sum):
            log.warning("model %d (seed %d, lr %g) diverged", m, *member)
        results.append(
            EpochResult(
                epoch=epoch + 1,
                step=int(states.step),
                lr=float(rates[m]),
                train_loss=loss_sum / count,
                train_accuracy=correct / count,
                eval_accuracy=evaluate(member_state(states, m).params),
                seconds=seconds,
                extra={"model": m, "seed": member.seed, "initial_lr": member.lr},
            )
        )
    return results


ProgressFn = Callable[[int, int], None]
ManyEpochFn = Callable[[list[EpochResult], TrainState], None]


def fit_many(
    train_images,
    train_labels,
    eval_images,
    eval_labels,
    config: TrainConfig,
    members: Sequence[Member],
    *,
    on_progress: ProgressFn | None = None,
    on_epoch: ManyEpochFn | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[TrainState, list[list[EpochResult]]]:
    """Trains every member for ``config.epochs``; returns (states, history).

    members: ``grid(seeds, lrs)``; ``config.seed`` and ``config.lr`` are not
    used. history: one list per epoch with one ``EpochResult`` per member,
    whose ``extra`` names the member (``model``, ``seed``, ``initial_lr``).
    A model that diverges is logged and keeps training as NaN; it does not
    disturb the others. The rest is as in ``train.fit``.
    """
    model.check_pairs(train_images, train_labels, "the training set")
    model.check_pairs(eval_images, eval_labels, "the evaluation set")
    model.check_images(train_images, "the training set")
    model.check_images(eval_images, "the evaluation set")
    model.check_labels(train_labels, config.sizes[-1], "training labels")
    model.check_labels(eval_labels, config.sizes[-1], "evaluation labels")
    n_train = int(np.shape(train_labels)[0])
    if n_train == 0:
        raise MnistJaxError("the training set is empty")
    if not members:
        raise MnistJaxError("a many-model run needs at least one member")

    # Known limitation: all models share the default device; with several
    # devices they could be spread over a "models" axis of a mesh.
    states = init_many(config, n_train, members)
    lrs = jnp.asarray([m.lr for m in members], jnp.float32)
    per_epoch = steps_per_epoch(n_train, config.batch_size)
    run_chunk = make_many_runner(config, n_train)
    images = jnp.asarray(train_images)
    labels = jnp.asarray(train_labels, jnp.int32)

    def evaluate(params: model.Params) -> float:
        return accuracy(params, eval_images, eval_labels, config.eval_batch_size)

    history: list[list[EpochResult]] = []
    step = 0
    while step < config.epochs * per_epoch:
        epoch, done = divmod(step, per_epoch)
        orders = many_orders(states.key, epoch, n_train, config.batch_size)
        started = time.perf_counter()
        while done < per_epoch:
            states = run_chunk(states, lrs, images, labels, orders)
            step = int(states.step)
            done = step - epoch * per_epoch
            if on_progress is not None:
                on_progress(done, per_epoch)
            if done < per_epoch and should_stop is not None and should_stop():
                return states, history

        seconds = time.perf_counter() - started
        results = _epoch_results(states, members, epoch, seconds, evaluate)
        states = states._replace(stats=jnp.zeros_like(states.stats))
        history.append(results)
        log.info("epoch %d: eval %s", epoch + 1, Spread.of(eval_accuracies(results)))
        if on_epoch is not None:
            on_epoch(results, states)
        if should_stop is not None and should_stop():
            break
    return states, history


def eval_accuracies(results: Sequence[EpochResult]) -> list[float]:
    """Returns the evaluation accuracy of each member of one epoch."""
    return [r.eval_accuracy for r in results]


def member_config(config: TrainConfig, member: Member) -> TrainConfig:
    """Returns the single-run config of ``member``: ``config`` with its seed and lr."""
    return TrainConfig.from_dict(
        {**config.to_dict(), "seed": member.seed, "lr": member.lr}
    )
