"""Measuring the product: clocks, FLOP counts, the matmul ceiling, memory.

Every figure is a wall-clock time of a call whose result has been waited for
(``jax.block_until_ready``); warm-up calls, which compile, are left out and
their time is reported apart as compile time. A figure is the median of
``repeats`` timed calls, with the min and max beside it.

FLOPs of one training example through the MLP (matrix products only; bias,
ReLU, dropout, softmax and Adam are left out, they are a few per weight):

- forward: ``2 * MACs``, with ``MACs = sum(n_in * n_out)``;
- weight gradients ``A_{l-1}^T dZ_l``: another ``2 * MACs``;
- input gradients ``dZ_l W_l^T``: ``2 * n_in * n_out`` for every layer but
  the first, because nothing needs the gradient of the images.

For 784-100-50-20-10 that is ``169,200 + 169,200 + 12,400 = 350,800``,
less than the usual ``6 * MACs = 507,600``, which counts the first layer's
input gradient too. Dividing achieved FLOP/s by the machine's measured
float32 matmul rate says how far a figure is from the limit.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np

from mnist_jax import model, train
from mnist_jax.errors import MnistJaxError

log = logging.getLogger(__name__)

Array = jax.Array


@dataclass(frozen=True)
class Timing:
    """Seconds of ``repeats`` timed calls, each doing ``work`` units of work.

    work: examples (or FLOPs) per call, so that ``rates`` are per second.
    """

    seconds: tuple[float, ...]
    work: float = 1.0

    def __post_init__(self) -> None:
        if not self.seconds or min(self.seconds) <= 0:
            raise MnistJaxError(f"a timing needs positive seconds, got {self.seconds}")

    @property
    def median_seconds(self) -> float:
        return float(np.median(self.seconds))

    def rates(self) -> dict[str, float]:
        """Returns ``{"median", "min", "max"}`` of work per second."""
        rates = [self.work / s for s in self.seconds]
        return {
            "median": self.work / self.median_seconds,
            "min": float(min(rates)),
            "max": float(max(rates)),
        }


def block(tree: Any) -> Any:
    """Returns ``tree`` once every array in it is computed (host values pass)."""
    return jax.block_until_ready(tree)


def time_calls(
    call: Callable[[], Any], repeats: int, *, work: float = 1.0, warmup: int = 1
) -> Timing:
    """Returns the timing of ``repeats`` calls of ``call`` after ``warmup`` calls.

    Each call's result is waited for before the clock stops.
    """
    return time_interleaved([call], [work], repeats, warmup=warmup)[0]


def time_interleaved(
    calls: Sequence[Callable[[], Any]],
    works: Sequence[float],
    repeats: int,
    *,
    warmup: int = 1,
) -> list[Timing]:
    """Returns one timing per call; the calls take turns, repeat by repeat.

    Taking turns means that a change in the machine's load during the run
    slows every call alike, so their ratios stay fair.
    """
    if repeats < 1:
        raise MnistJaxError(f"repeats must be 1 or more, got {repeats}")
    for call in calls:
        for _ in range(warmup):
            block(call())
    seconds: list[list[float]] = [[] for _ in calls]
    for _ in range(repeats):
        for call, times in zip(calls, seconds, strict=True):
            started = time.perf_counter()
            block(call())
            times.append(time.perf_counter() - started)
    return [Timing(tuple(t), w) for t, w in zip(seconds, works, strict=True)]


# FLOPs and the ceiling.


def flops_per_example(sizes: Sequence[int] = model.DEFAULT_SIZES) -> dict[str, int]:
    """Returns the matmul FLOPs of one example (see the module docstring)."""
    pairs = list(zip(sizes[:-1], sizes[1:], strict=True))
    macs = sum(n_in * n_out for n_in, n_out in pairs)
    input_grads = 2 * sum(n_in * n_out for n_in, n_out in pairs[1:])
    return {
        "macs": macs,
        "forward": 2 * macs,
        "weight_grads": 2 * macs,
        "input_grads": input_grads,
        "train": 4 * macs + input_grads,
        "train_6_macs": 6 * macs,
        "inference": 2 * macs,
    }


def matmul_rate(n: int, repeats: int) -> Timing:
    """Returns the timing of ``jnp.dot`` of two float32 ``(n, n)`` matrices.

    ``Timing.rates()`` is then in FLOP/s (``2 n^3`` FLOPs a product).
    """
    key_a, key_b = jax.random.split(jax.random.key(0))
    a = jax.random.normal(key_a, (n, n), jnp.float32)
    b = jax.random.normal(key_b, (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    return time_calls(lambda: dot(a, b), repeats, work=2.0 * n**3)


@partial(jax.jit, static_argnames=("steps",))
def _matmul_skeleton(weights: list[Array], x: Array, steps: int) -> list[Array]:
    def step(_, weights):
        acts = [x]
        for w in weights:
            acts.append(acts[-1] @ w)
        grad = acts[-1]
        new = list(weights)
        for i in reversed(range(len(weights))):
            new[i] = weights[i] - 1e-9 * (acts[i].T @ grad)
            if i > 0:
                grad = grad @ weights[i].T
        return new

    return jax.lax.fori_loop(0, steps, step, weights)


def same_shape_rate(
    sizes: Sequence[int], batch: int, steps: int, repeats: int
) -> Timing:
    """Returns the timing of a training step's matrix products alone.

    ``steps`` steps of the forward, weight-gradient and input-gradient
    products at the batch's own shapes, in one jitted loop (each step
    nudges the weights, so no product can be hoisted out of the loop).
    ``Timing.rates()`` is in FLOP/s: the best a step could do on this
    machine if it were nothing but its matmuls.
    """
    keys = jax.random.split(jax.random.key(1), len(sizes))
    weights = [
        jax.random.normal(k, (n_in, n_out), jnp.float32) / math.sqrt(n_in)
        for k, n_in, n_out in zip(keys, sizes[:-1], sizes[1:], strict=False)
    ]
    x = jax.random.uniform(keys[-1], (batch, sizes[0]), jnp.float32)
    work = float(flops_per_example(sizes)["train"] * batch * steps)
    return time_calls(lambda: _matmul_skeleton(weights, x, steps), repeats, work=work)


# Training, epochs, inference and augmentation through the product's code.


@dataclass
class TrainRunner:
    """A compiled chunk of training steps (``train.make_chunk_runner``).

    compile_seconds: lowering plus XLA compilation of the chunk.
    """

    config: train.TrainConfig
    run: Any
    state: train.TrainState
    order: Array
    compile_seconds: float


def train_runner(
    images: Array, labels: Array, config: train.TrainConfig
) -> TrainRunner:
    """Returns the product's chunk runner for ``config``, compiled.

    images: ``(N, 784)`` uint8 on the device; labels: ``(N,)`` int32.
    """
    n_train = int(images.shape[0])
    optimizer = train.make_optimizer(config, n_train)
    state = train.init_state(config, n_train)
    order = train.epoch_order(state.key, 0, n_train, config.batch_size)
    run_chunk = train.make_chunk_runner(config, optimizer, n_train)

    started = time.perf_counter()
    jitted = cast(Any, run_chunk)  # a jax.jit object, typed as a plain callable
    compiled = jitted.lower(state, images, labels, order).compile()
    seconds = time.perf_counter() - started
    log.debug("compiled %s in %.2f s", config, seconds)
    return TrainRunner(config, compiled, state, order, seconds)


def _restart(state: train.TrainState) -> train.TrainState:
    return state._replace(step=jnp.zeros_like(state.step))


def training_throughput(
    runners: Sequence[TrainRunner], images: Array, labels: Array, repeats: int
) -> list[Timing]:
    """Returns the timing of each runner's chunk of steps, in examples/s.

    The runners take turns (``time_interleaved``). Every timed chunk starts
    at step 0 of the epoch, so all its ``chunk_steps`` steps run (a chunk
    skips the steps past the epoch's end).
    """
    n_train = int(images.shape[0])
    for runner in runners:
        config = runner.config
        if config.chunk_steps > train.steps_per_epoch(n_train, config.batch_size):
            raise MnistJaxError(
                f"{config.chunk_steps} steps at batch {config.batch_size} do not "
                f"fit in one epoch of {n_train} examples; use fewer steps"
            )

    def chunk(runner: TrainRunner) -> Callable[[], train.TrainState]:
        def call():
            state = _restart(runner.state)
            runner.state = runner.run(state, images, labels, runner.order)
            return runner.state

        return call

    works = [r.config.batch_size * r.config.chunk_steps for r in runners]
    timings = time_interleaved([chunk(r) for r in runners], works, repeats)
    for runner in runners:
        if int(runner.state.step) != runner.config.chunk_steps:
            raise MnistJaxError(f"a chunk ran {int(runner.state.step)} steps")
    return timings


def epoch_seconds(
    runner: TrainRunner, images: Array, labels: Array, repeats: int
) -> Timing:
    """Returns the timing of a whole epoch, in examples/s.

    The loop is ``fit``'s: the epoch's order, then chunks until the epoch
    ends, reading the step back after each chunk. ``fit``'s finiteness check
    and its evaluation pass are left out.
    """
    config = runner.config
    n_train = int(images.shape[0])
    per_epoch = train.steps_per_epoch(n_train, config.batch_size)
    epochs = [0]

    def call():
        state = _restart(runner.state)
        epochs[0] += 1
        order = train.epoch_order(state.key, epochs[0], n_train, config.batch_size)
        done = 0
        while done < per_epoch:
            state = runner.run(state, images, labels, order)
            done = int(state.step)
        runner.state = state
        return state

    return time_calls(call, repeats, work=n_train, warmup=0)


def inference_throughput(
    params: model.Params, images: np.ndarray, batch: int, repeats: int
) -> tuple[Timing, float]:
    """Returns (timing in examples/s, compile seconds) of ``train.predict``.

    images: ``(N, 784)`` uint8 on the host; the result comes back as NumPy.
    Compile seconds are the first call's time less the median call's.
    """
    started = time.perf_counter()
    train.predict(params, images, batch)
    first = time.perf_counter() - started
    timing = time_calls(
        lambda: train.predict(params, images, batch),
        repeats,
        work=len(images),
        warmup=0,
    )
    return timing, max(first - timing.median_seconds, 0.0)


def augment_throughput(
    images: Array,
    config: Any,
    calls: int,
    repeats: int,
    samplers: Sequence[str] = ("auto",),
) -> tuple[list[Timing], list[float]]:
    """Returns (timings in images/s, compile seconds), one per sampler.

    images: ``(B, 784)`` float32 in [0, 1] on the device. Each timed repeat
    makes ``calls`` jitted calls of ``augment_batch``, each with a fresh
    key; the samplers (as in ``augment.augment_image``: ``"jax"`` times the
    JAX sampler on the CPU) take turns, repeat by repeat.
    """
    from mnist_jax import augment

    count = len(samplers) * (calls * repeats + 1)
    # Split into separate arrays now: indexing a key array while the clock
    # runs would add a dispatch to every call.
    keys = iter(list(jax.random.split(jax.random.key(2), count)))
    calls_of, compile_seconds = [], []
    for sampler in samplers:
        fn = jax.jit(
            partial(augment.augment_batch, sampler=sampler), static_argnames="config"
        )
        started = time.perf_counter()
        block(fn(next(keys), images, config))
        compile_seconds.append(time.perf_counter() - started)

        def call(fn=fn):
            return [fn(next(keys), images, config) for _ in range(calls)]

        calls_of.append(call)

    work = calls * images.shape[0]
    timings = time_interleaved(calls_of, [work] * len(calls_of), repeats, warmup=0)
    return timings, compile_seconds


# Memory, devices and versions.


def _status_kib(name: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Resets the process's peak resident size, where Linux allows; says if so."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int:
    """Returns the peak resident size since the last reset (else since start)."""
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def device_memory() -> dict[str, int] | None:
    """Returns the first device's ``memory_stats()`` peak and limit, or None.

    The CPU backend reports nothing; GPUs and TPUs report bytes.
    """
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 - backends without the call raise various
        return None
    if not stats:
        return None
    keys = ("peak_bytes_in_use", "bytes_in_use", "bytes_limit")
    return {k: int(stats[k]) for k in keys if k in stats}


def machine() -> dict[str, Any]:
    """Returns what ran the benchmark: backend, devices, CPU and Python."""
    device = jax.devices()[0]
    return {
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "device_kind": getattr(device, "device_kind", str(device)),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def versions(extra: Sequence[str] = ()) -> dict[str, str | None]:
    """Returns the versions of JAX, its helpers and ``extra`` modules (or None)."""
    from importlib import metadata

    import mnist_jax

    out: dict[str, str | None] = {}
    for name in ("mnist-jax", "jax", "jaxlib", "optax", "numpy", "scipy", *extra):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    if out["mnist-jax"] is None:  # a checkout that is not installed
        out["mnist-jax"] = getattr(mnist_jax, "__version__", None)
    return out


@dataclass
class Record:
    """One figure of the report: who, what, at which batch, and how fast.

    unit: ``"examples/s"``, ``"images/s"`` or ``"s"``; ``median``, ``min`` and
    ``max`` are in that unit. note: why a figure is special or missing.
    """

    system: str
    measure: str
    batch: int | None
    augment: bool | None
    unit: str
    median: float
    min: float
    max: float
    repeats: int
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_timing(
        cls,
        system: str,
        measure: str,
        timing: Timing,
        *,
        batch: int | None = None,
        augment: bool | None = None,
        unit: str = "examples/s",
        **extra: Any,
    ) -> Record:
        """Returns the record of a throughput ``timing``."""
        rates = timing.rates()
        return cls(
            system,
            measure,
            batch,
            augment,
            unit,
            rates["median"],
            rates["min"],
            rates["max"],
            len(timing.seconds),
            dict(extra),
        )

    @classmethod
    def once(
        cls,
        system: str,
        measure: str,
        seconds: float,
        batch: int | None = None,
        augment: bool | None = None,
        **extra: Any,
    ) -> Record:
        """Returns the record of one duration in seconds (a compile time)."""
        return cls(
            system, measure, batch, augment, "s", seconds, seconds, seconds, 1, extra
        )

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.update(out.pop("extra"))
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Record:
        """Returns the record ``to_dict`` gave ``values``; other keys are extra."""
        names = [f.name for f in dataclasses.fields(cls) if f.name != "extra"]
        extra = {k: v for k, v in values.items() if k not in names}
        return cls(**{k: values[k] for k in names}, extra=extra)
