"""Training: Optax Adam over mini-batches, whole chunks of steps on the device.

An epoch is a seeded permutation of the training set cut into
``ceil(N / batch_size)`` batches. The last batch is padded to full size with
rows of weight 0, so every batch has one shape (one compiled program) and no
example is dropped. Steps run in chunks of ``chunk_steps`` inside one jitted
``lax.scan``; Python sees the state only between chunks, for progress,
interruption and divergence checks.

Randomness is a function of the seed and the global step alone: the epoch's
order comes from ``fold_in(shuffle_key, epoch)`` and a step's dropout and
augmentation from ``fold_in(step_key, step)``. A run resumed from any chunk
boundary therefore repeats the uninterrupted run exactly.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mnist_jax import model
from mnist_jax.errors import MnistJaxError
from mnist_jax.schedules import SCHEDULES, make_schedule

log = logging.getLogger(__name__)

Array = jax.Array

# The notebook's ranges: rotation ±15°, shift ±2 px, zoom 0.9-1.1.
AUGMENT: dict[str, Any] = {
    "rotate": 15.0,
    "shift": 2.0,
    "zoom": (0.9, 1.1),
    "elastic": None,
}


# A chunk draws its steps' augmentation parameters (16 bytes an example) up
# front when it has at most this many examples (64 MiB of them).
PREDRAW_EXAMPLES = 1 << 22


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run; saved as config.json and in checkpoints.

    decay_steps: steps between learning-rate decays; 0 means once per epoch.
    augment: keyword arguments of ``augment.AugmentConfig``, or None for none.
    """

    sizes: tuple[int, ...] = model.DEFAULT_SIZES
    init: str = "he"
    epochs: int = 30
    batch_size: int = 128
    lr: float = 3e-3
    schedule: str = "inverse-time"
    decay_rate: float = 0.1
    decay_steps: int = 0
    keep_prob: float = 0.8
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    seed: int = 0
    augment: dict[str, Any] | None = field(default_factory=lambda: dict(AUGMENT))
    chunk_steps: int = 64
    eval_batch_size: int = 1000

    def __post_init__(self) -> None:
        object.__setattr__(self, "sizes", tuple(int(n) for n in self.sizes))
        if self.augment is not None:
            object.__setattr__(self, "augment", dict(self.augment))
        self.validate()

    def validate(self) -> None:
        """Raises ``MnistJaxError`` for a value no run could use."""
        for name in ("epochs", "batch_size", "chunk_steps", "seed", "decay_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise MnistJaxError(f"{name} must be a whole number, got {value!r}")
        for name in ("lr", "keep_prob", "decay_rate", "b1", "b2", "eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(
                value, (int, float, np.number)
            ):
                raise MnistJaxError(f"{name} must be a number, got {value!r}")
        checks = [
            (self.epochs >= 0, f"epochs must be 0 or more, got {self.epochs}"),
            (
                self.batch_size >= 1,
                f"batch size must be 1 or more, got {self.batch_size}",
            ),
            (self.lr > 0, f"learning rate must be positive, got {self.lr}"),
            (
                0 < self.keep_prob <= 1,
                f"keep-prob must be in (0, 1], got {self.keep_prob}",
            ),
            (
                self.decay_rate >= 0,
                f"decay rate must be 0 or more, got {self.decay_rate}",
            ),
            (
                self.decay_steps >= 0,
                f"decay steps must be 0 or more, got {self.decay_steps}",
            ),
            (
                self.schedule in SCHEDULES,
                f"unknown schedule {self.schedule!r}; "
                f"choose one of {', '.join(SCHEDULES)}",
            ),
            (
                self.init in model.INITS,
                f"unknown init {self.init!r}; choose one of {', '.join(model.INITS)}",
            ),
            (
                len(self.sizes) >= 2 and min(self.sizes) >= 1,
                f"layer sizes must be two or more positive numbers, got {self.sizes}",
            ),
            (
                1 <= self.chunk_steps <= 100_000,
                f"chunk steps must be in 1..100000, got {self.chunk_steps}",
            ),
            (
                0 <= self.seed < 2**32,
                f"seed must be in 0..{2**32 - 1}, got {self.seed}",
            ),
            (
                self.decay_steps < 2**31,
                f"decay steps must be below 2**31, got {self.decay_steps}",
            ),
            (math.isfinite(self.lr), f"learning rate must be finite, got {self.lr}"),
            (
                self.lr <= float(np.finfo(np.float32).max),
                f"learning rate must fit in float32 (at most 3.4e38), got {self.lr}",
            ),
            (
                math.isfinite(self.decay_rate),
                f"decay rate must be finite, got {self.decay_rate}",
            ),
            (
                self.batch_size < 2**31,
                f"batch size must be below 2**31, got {self.batch_size}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise MnistJaxError(message)

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-ready dict."""
        out = dataclasses.asdict(self)
        out["sizes"] = list(self.sizes)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Returns the config saved by ``to_dict``; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise MnistJaxError(f"unknown config keys: {', '.join(unknown)}")
        return cls(**values)


class TrainState(NamedTuple):
    """The whole mutable state of a run, a pytree.

    stats: this epoch's running ``[loss_sum, correct, count]`` (float32).
    """

    params: model.Params
    opt_state: optax.OptState
    step: Array
    key: Array
    stats: Array


@dataclass
class EpochResult:
    """One epoch's summary, as written to metrics.jsonl."""

    epoch: int
    step: int
    lr: float
    train_loss: float
    train_accuracy: float
    eval_accuracy: float
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.update(out.pop("extra"))
        return out


class Diverged(MnistJaxError):
    """The loss or a parameter became NaN or infinite."""


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Returns ``ceil(n_train / batch_size)``: the short last batch is kept."""
    return max(1, math.ceil(n_train / batch_size))


def make_optimizer(config: TrainConfig, n_train: int) -> optax.GradientTransformation:
    """Returns Adam whose learning rate follows the configured schedule.

    ``inject_hyperparams`` keeps the rate applied at the last step in the
    optimizer state, which is where the metrics read it from.
    """
    per_epoch = steps_per_epoch(n_train, config.batch_size)
    schedule = make_schedule(
        config.schedule,
        config.lr,
        total_steps=per_epoch * config.epochs,
        decay_rate=config.decay_rate,
        decay_steps=config.decay_steps or per_epoch,
    )
    return optax.inject_hyperparams(optax.adam)(
        learning_rate=schedule, b1=config.b1, b2=config.b2, eps=config.eps
    )


def init_state(config: TrainConfig, n_train: int) -> TrainState:
    """Returns the state at step 0: fresh parameters and Adam moments."""
    root = jax.random.key(config.seed)
    init_key, run_key = jax.random.split(root)
    params = model.init_params(init_key, config.sizes, config.init)
    opt_state = make_optimizer(config, n_train).init(params)
    return TrainState(
        params=params,
        opt_state=opt_state,
        step=jnp.zeros((), jnp.int32),
        key=run_key,
        stats=jnp.zeros((3,), jnp.float32),
    )


def current_lr(state: TrainState) -> float:
    """Returns the learning rate Adam applied at the state's last step."""
    return float(state.opt_state.hyperparams["learning_rate"])


def _aug_config(config: TrainConfig) -> Any:
    """Returns the run's ``augment.AugmentConfig``, or None for no augmentation."""
    if config.augment is None:
        return None
    from mnist_jax import augment

    values = dict(config.augment)
    values["zoom"] = tuple(values.get("zoom", augment.AugmentConfig.zoom))
    if values.get("elastic") is not None:
        values["elastic"] = tuple(values["elastic"])
    return augment.AugmentConfig(**values)


def step_keys(key: Array, step: Array | int) -> tuple[Array, Array]:
    """Returns ``(dropout key, augmentation key)`` of a run's step ``step``."""
    drop_key, aug_key = jax.random.split(jax.random.fold_in(key, step))
    return drop_key, aug_key


def make_train_step(
    config: TrainConfig, optimizer: optax.GradientTransformation
) -> Callable[..., tuple[TrainState, Array, Array]]:
    """Returns ``step(state, images, labels, weights[, aug]) -> (state, loss, hits)``.

    images: ``(B, 784)`` uint8; labels: ``(B,)`` int; weights: ``(B,)`` 0/1.
    The step's keys are ``step_keys(state.key, state.step)``. aug: the
    step's augmentation parameters, ``augment.batch_params`` of its
    augmentation key, where the caller drew them beforehand; without it the
    step draws them itself (the same numbers).
    """
    aug_config = _aug_config(config)
    if aug_config is not None:
        from mnist_jax import augment

    def loss_and_logits(params, x, labels, weights, key):
        logits = model.forward(params, x, key=key, keep_prob=config.keep_prob)
        return model.cross_entropy(logits, labels, weights), logits

    grad_fn = jax.value_and_grad(loss_and_logits, has_aux=True)

    def step(state: TrainState, images, labels, weights, aug=None):
        drop_key, aug_key = step_keys(state.key, state.step)
        x = model.to_inputs(images, state.params[0]["w"].dtype)
        if aug_config is not None:
            if aug is None:
                aug = augment.batch_params(aug_key, len(x), aug_config)
            x = augment.apply_batch(x, aug)

        (loss, logits), grads = grad_fn(state.params, x, labels, weights, drop_key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)

        hits = (jnp.argmax(logits, axis=-1) == labels) * weights
        count = weights.sum()
        stats = state.stats + jnp.stack([loss * count, hits.sum(), count])
        new_state = TrainState(params, opt_state, state.step + 1, state.key, stats)
        return new_state, loss, hits.sum()

    return step


def make_chunk_runner(
    config: TrainConfig, optimizer: optax.GradientTransformation, n_train: int
) -> Callable[[TrainState, Array, Array, Array], TrainState]:
    """Returns a jitted ``run(state, images, labels, order) -> state``.

    It runs up to ``chunk_steps`` steps of the current epoch, starting at
    ``state.step``, and stops at the epoch's end (later steps in the chunk
    are skipped with ``lax.cond``, so one program serves every chunk).
    order: ``(steps_per_epoch * batch_size,)`` int32, the epoch's permutation
    padded with ``-1``.

    The chunk's batches are gathered from ``images`` in one go before its
    steps run (at most one epoch's worth). Gathering inside each step let
    XLA fuse the gather into the augmentation's first kernel, which made an
    augmented step on the CPU about 15 % slower (see benchmarks/README.md).
    So are the steps' rotations, shifts and zooms (the same numbers each
    step would draw): on the CPU, a step whose inputs waited on a
    random-number loop ran that loop after the dropout masks' instead of
    beside the first layer's product, 0.6-0.9 ms a step at batch 1,024.
    """
    per_epoch = steps_per_epoch(n_train, config.batch_size)
    batch = config.batch_size
    length = min(config.chunk_steps, per_epoch)
    step = make_train_step(config, optimizer)
    aug_config = _aug_config(config)
    # Elastic fields are 1,568 numbers an example: those are drawn per step.
    predraw = (
        aug_config is not None
        and aug_config.elastic is None
        and length * batch <= PREDRAW_EXAMPLES
    )

    def chunk_aug(state: TrainState):
        from mnist_jax import augment

        def one(i):
            aug_key = step_keys(state.key, state.step + i)[1]
            return augment.batch_params(aug_key, batch, aug_config)

        return jax.vmap(one)(jnp.arange(length))

    def body(state: TrainState, batch_data, end):
        def run(s: TrainState) -> TrainState:
            return step(s, *batch_data)[0]

        return jax.lax.cond(state.step < end, run, lambda s: s, state), None

    @partial(jax.jit, donate_argnums=(0,))
    def run_chunk(state: TrainState, images, labels, order) -> TrainState:
        end = (state.step // per_epoch + 1) * per_epoch
        start = (state.step % per_epoch) * batch
        padded = jnp.pad(order, (0, length * batch), constant_values=-1)
        idx = jax.lax.dynamic_slice(padded, (start,), (length * batch,))
        weights = (idx >= 0).astype(jnp.float32).reshape(length, batch)
        idx = jnp.maximum(idx, 0)
        batches: tuple[Any, ...] = (
            images[idx].reshape(length, batch, -1),
            labels[idx].reshape(length, batch),
            weights,
        )
        if predraw:
            batches = (*batches, chunk_aug(state))
        state, _ = jax.lax.scan(partial(body, end=end), state, batches)
        return state

    return run_chunk


def epoch_order(key: Array, epoch: int, n_train: int, batch_size: int) -> Array:
    """Returns the epoch's permutation of ``range(n_train)``, padded with -1.

    The shape is ``(steps_per_epoch * batch_size,)`` int32.
    """
    total = steps_per_epoch(n_train, batch_size) * batch_size
    return _epoch_order(key, jnp.int32(epoch), n_train, total)


@partial(jax.jit, static_argnums=(2, 3))
def _epoch_order(key, epoch, n_train: int, total: int):
    shuffle_key = jax.random.fold_in(jax.random.fold_in(key, 0x5EED), epoch)
    perm = jax.random.permutation(shuffle_key, n_train).astype(jnp.int32)
    return jnp.concatenate([perm, jnp.full((total - n_train,), -1, jnp.int32)])


@partial(jax.jit, static_argnames=("batch_size",))
def _predict_padded(params, images, batch_size: int):
    batches = images.reshape(-1, batch_size, images.shape[-1])
    logits = jax.lax.map(lambda x: model.forward(params, x), batches)
    return jnp.argmax(logits, axis=-1).reshape(-1)


def predict(params: model.Params, images, batch_size: int = 1000) -> np.ndarray:
    """Returns predicted classes ``(N,)`` int for images ``(N, 784)`` uint8.

    Evaluation is deterministic (no dropout, no augmentation). The set is
    padded to a whole number of batches, so its length compiles one program
    and every example counts.
    """
    images = np.asarray(images)
    model.check_images(images, "predict")
    n = images.shape[0]
    if n == 0:
        return np.zeros((0,), np.int64)
    batch_size = min(batch_size, n)
    padded = math.ceil(n / batch_size) * batch_size
    if padded != n:
        pad = np.zeros((padded - n, *images.shape[1:]), images.dtype)
        images = np.concatenate([images, pad])
    return np.asarray(_predict_padded(params, jnp.asarray(images), batch_size))[:n]


def accuracy(params: model.Params, images, labels, batch_size: int = 1000) -> float:
    """Returns the fraction of all examples whose predicted class equals the label."""
    labels = np.asarray(labels)
    if labels.size == 0:
        return float("nan")
    return float(np.mean(predict(params, images, batch_size) == labels))


@jax.jit
def _all_finite(params: model.Params, stats: Array) -> Array:
    leaves = jax.tree_util.tree_leaves(params) + [stats]
    return jnp.stack([jnp.isfinite(leaf).all() for leaf in leaves]).all()


def _finite(state: TrainState) -> bool:
    """Says whether every parameter and the running loss are finite (one sync)."""
    return bool(_all_finite(state.params, state.stats))


ProgressFn = Callable[[int, int], None]
EpochFn = Callable[[EpochResult, TrainState], None]


def fit(
    train_images,
    train_labels,
    eval_images,
    eval_labels,
    config: TrainConfig,
    *,
    state: TrainState | None = None,
    on_progress: ProgressFn | None = None,
    on_epoch: EpochFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    data_parallel: bool | None = None,
) -> tuple[TrainState, list[EpochResult]]:
    """Trains until ``config.epochs`` epochs are done; returns (state, history).

    train_images: ``(N, 784)`` uint8; train_labels: ``(N,)`` int in 0..9.
    state: a state to continue from (``--resume``), else a fresh one.
    on_progress(steps_done_in_epoch, steps_per_epoch) runs after each chunk;
    on_epoch(result, state) after each epoch. When ``should_stop()`` turns
    true, ``fit`` returns after the current chunk with the state mid-epoch
    (at once, if it is true before the first chunk). A ``should_stop`` with
    an ``arm()`` method (``signals.StopFlag``) is armed as the steps begin.
    Raises ``Diverged`` when the loss or a parameter stops being finite.
    data_parallel: split every batch over all devices (``mnist_jax.parallel``);
    None turns it on when JAX sees more than one device.
    """
    model.check_pairs(train_images, train_labels, "the training set")
    model.check_pairs(eval_images, eval_labels, "the evaluation set")
    model.check_images(train_images, "the training set")
    model.check_images(eval_images, "the evaluation set")
    classes = f"training labels (the last of --sizes gives {config.sizes[-1]} classes)"
    model.check_labels(train_labels, config.sizes[-1], classes)
    model.check_labels(
        eval_labels, config.sizes[-1], classes.replace("training", "evaluation")
    )
    n_train = int(np.shape(train_labels)[0])
    if n_train == 0:
        raise MnistJaxError("the training set is empty")
    n_pixels = int(np.prod(np.shape(train_images)[1:]))
    if n_pixels != config.sizes[0]:
        raise MnistJaxError(
            f"the first layer size {config.sizes[0]} does not match the "
            f"{n_pixels} pixels of an image; start --sizes with {n_pixels}"
        )

    optimizer = make_optimizer(config, n_train)
    state = init_state(config, n_train) if state is None else state
    per_epoch = steps_per_epoch(n_train, config.batch_size)
    run_chunk: Callable[..., TrainState]
    if data_parallel is None:
        data_parallel = jax.device_count() > 1
    if data_parallel:
        from mnist_jax import parallel

        run_chunk = parallel.make_sharded_runner(config, optimizer, n_train)
        images: Any = np.asarray(train_images)
        labels: Any = np.asarray(train_labels, np.int32)
    else:
        run_chunk = make_chunk_runner(config, optimizer, n_train)
        images = jnp.asarray(train_images)
        labels = jnp.asarray(train_labels, jnp.int32)

    if should_stop is not None:
        arm = getattr(should_stop, "arm", None)
        if callable(arm):
            arm()  # a signals.StopFlag: from here on a signal waits for the chunk
        if should_stop():  # asked before any step ran
            return state, []
    history: list[EpochResult] = []
    step = int(state.step)
    while step < config.epochs * per_epoch:
        epoch, done = divmod(step, per_epoch)
        order = epoch_order(state.key, epoch, n_train, config.batch_size)
        started = time.perf_counter()
        while done < per_epoch:
            state = run_chunk(state, images, labels, order)
            step = int(state.step)
            done = step - epoch * per_epoch
            if not _finite(state):
                raise Diverged(
                    f"training diverged in epoch {epoch + 1} by step {step}: "
                    "the loss or a parameter is not finite; try a lower --lr"
                )
            if on_progress is not None:
                on_progress(done, per_epoch)
            if done < per_epoch and should_stop is not None and should_stop():
                return state, history

        loss_sum, correct, count = (float(v) for v in state.stats)
        result = EpochResult(
            epoch=epoch + 1,
            step=step,
            lr=current_lr(state),
            train_loss=loss_sum / count,
            train_accuracy=correct / count,
            eval_accuracy=accuracy(
                state.params, eval_images, eval_labels, config.eval_batch_size
            ),
            seconds=time.perf_counter() - started,
        )
        state = state._replace(stats=jnp.zeros_like(state.stats))
        history.append(result)
        log.info("epoch %d: %s", result.epoch, result)
        if on_epoch is not None:
            on_epoch(result, state)
        if should_stop is not None and should_stop():
            break
    return state, history
