"""Data-parallel training: every batch split over all devices, of all processes.

A mesh with one axis, ``"data"``, spans ``jax.devices()``. Each step's global
batch of ``B`` rows is cut into equal blocks, one per device, while the
parameters and the Adam moments are replicated. The loss is still the
weighted mean over the whole global batch, so XLA sums the gradients across
devices and the update equals the single-device one up to the order of that
sum (float rounding).

Feeding. Every process keeps the training set on the host and computes the
same epoch order from the seed. Before a chunk of steps it gathers only its
own rows of each of the chunk's batches, ``(chunk_steps, B / P, 784)`` for
``P`` processes, and ``jax.make_array_from_process_local_data`` joins them
into one global ``(chunk_steps, B, 784)`` array. A device thus holds one
chunk of batches, never the data set.

Randomness. Dropout masks and augmentation draws are made for the global
batch shape from the step's key, so an example gets the same mask and the
same warp on one device or on many. With ``jax_threefry_partitionable`` (on
by default in this JAX) each device draws only its own rows' bits; with it
off XLA draws every bit on every device: the same values, more work.

Between chunks the state comes back to one local device, so the loop of
``train.fit``, evaluation and checkpoints run unchanged; the cost is moving
the replicated state (about 1 MB for the default MLP) once per chunk.
Known limitation: evaluation is not split; every process evaluates the
whole evaluation set on one of its devices.

Multi-host. ``initialize`` wraps ``jax.distributed.initialize``; it must run
before any other JAX call. CPU processes then talk through JAX's CPU
collectives (``jax_cpu_collectives_implementation``, gloo by default).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from mnist_jax.errors import MnistJaxError
from mnist_jax.train import TrainConfig, TrainState, make_train_step, steps_per_epoch

log = logging.getLogger(__name__)

Array = jax.Array
AXIS = "data"


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    timeout_s: int = 300,
) -> None:
    """Joins this process to a multi-process JAX run.

    coordinator: ``"HOST:PORT"`` of process 0, which serves there. Left as
    None, JAX reads ``$JAX_COORDINATOR_ADDRESS`` or detects a Slurm, Open MPI,
    Kubernetes or Cloud TPU job, which also give the other two values.
    Call it before anything else touches JAX.
    """
    if coordinator is not None:
        host, _, port = coordinator.rpartition(":")
        if not host or not port.isdigit():
            raise MnistJaxError(
                f"--coordinator must be HOST:PORT, e.g. 10.0.0.1:1234, "
                f"got {coordinator!r}"
            )
    if num_processes is not None and num_processes < 1:
        raise MnistJaxError(f"--num-processes must be 1 or more, got {num_processes}")
    if process_id is not None and process_id < 0:
        raise MnistJaxError(f"--process-id must be 0 or more, got {process_id}")
    if (
        process_id is not None
        and num_processes is not None
        and process_id >= num_processes
    ):
        raise MnistJaxError(
            f"--process-id must be in 0..{num_processes - 1}, got {process_id}"
        )

    try:
        jax.distributed.initialize(
            coordinator,
            num_processes,
            process_id,
            initialization_timeout=timeout_s,
        )
    except (RuntimeError, ValueError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise MnistJaxError(
            f"could not join the multi-process run ({reason}); check "
            "--coordinator, --num-processes and --process-id, and start every "
            "process within the timeout"
        ) from None
    log.info(
        "process %d of %d, %d local and %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )


def is_primary() -> bool:
    """Returns True in process 0, the one that writes files and prints."""
    return jax.process_index() == 0


def data_mesh(devices: list[Any] | None = None) -> Mesh:
    """Returns a one-axis mesh ``("data",)`` over ``devices`` (default: all)."""
    devices = jax.devices() if devices is None else devices
    return jax.make_mesh(
        (len(devices),), (AXIS,), axis_types=(AxisType.Auto,), devices=devices
    )


def check_batch(batch_size: int, mesh: Mesh) -> None:
    """Raises ``MnistJaxError`` unless the batch splits evenly over the devices."""
    n = mesh.size
    if batch_size % n:
        lower, upper = (batch_size // n) * n, -(-batch_size // n) * n
        options = f"{lower} or {upper}" if lower else f"{upper}"
        raise MnistJaxError(
            f"--batch-size {batch_size} does not split over {n} devices; "
            f"use a multiple of {n}, e.g. {options}"
        )


def local_rows(mesh: Mesh, batch_size: int) -> slice:
    """Returns this process's block of rows ``lo:hi`` of every global batch.

    Read from the sharding itself, so any device order in the mesh works as
    long as a process's devices sit next to each other on the axis.
    """
    sharding = NamedSharding(mesh, P(AXIS))
    blocks = sharding.addressable_devices_indices_map((batch_size,)).values()
    spans = sorted(block[0].indices(batch_size)[:2] for block in blocks if block)
    lo, hi = spans[0][0], spans[-1][1]
    if sum(stop - start for start, stop in spans) != hi - lo:
        raise MnistJaxError(
            "this process's devices are not adjacent on the data axis; "
            "build the mesh with each process's devices together"
        )
    return slice(lo, hi)


def check_same_data(images: np.ndarray, labels: np.ndarray) -> None:
    """Raises ``MnistJaxError`` unless every process holds the same training set.

    Compares a few checksums across processes; a mismatch would otherwise
    train silently on batches that no single order describes.
    """
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    rows = np.arange(len(labels), dtype=np.int64)
    sums = (
        len(labels),
        int(labels.astype(np.int64) @ (rows + 1)),
        int(images.sum(dtype=np.int64)),
        int(images[:, ::7].astype(np.int64).sum(axis=1) @ (rows % 1009)),
    )
    fingerprint = np.array([v % (2**31 - 1) for v in sums], np.int32)
    try:
        multihost_utils.assert_equal(fingerprint, "training sets differ")
    except AssertionError:
        raise MnistJaxError(
            "the processes hold different training sets; give every process "
            "the same --data, --dev-size and --seed"
        ) from None


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Returns ``tree`` as global arrays, each replicated on every mesh device.

    Every process must pass the same values. PRNG keys travel as key data.
    """
    sharding = NamedSharding(mesh, P())

    def put(leaf: Array) -> Array:
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            data = put(jax.random.key_data(leaf))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
        return jax.make_array_from_process_local_data(sharding, np.asarray(leaf))

    return jax.tree.map(put, tree)


def localize(tree: Any) -> Any:
    """Returns the local copy of replicated global arrays, on one local device."""

    def take(leaf: Array) -> Array:
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            data = take(jax.random.key_data(leaf))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
        return leaf.addressable_data(0)

    return jax.tree.map(take, tree)


def chunk_indices(
    order: np.ndarray, first_step: int, per_epoch: int, config: TrainConfig, rows: slice
) -> np.ndarray:
    """Returns ``(chunk_steps, hi - lo)`` rows of the training set, -1 for none.

    Step ``first_step + s`` of the epoch reads ``order`` at
    ``(step % per_epoch) * B + lo .. + hi``; steps past the epoch's end get -1
    and are skipped on the device.
    """
    steps = first_step + np.arange(config.chunk_steps)
    end = (first_step // per_epoch + 1) * per_epoch
    starts = (steps % per_epoch) * config.batch_size
    idx = order[starts[:, None] + np.arange(rows.start, rows.stop)[None, :]]
    idx[steps >= end] = -1
    return idx


ShardedRunner = Callable[[TrainState, np.ndarray, np.ndarray, Array], TrainState]


def make_sharded_chunk(
    config: TrainConfig,
    optimizer: optax.GradientTransformation,
    n_train: int,
    mesh: Mesh,
) -> Callable[[TrainState, Array, Array, Array], TrainState]:
    """Returns the jitted ``chunk(state, images, labels, weights) -> state``.

    images: ``(chunk_steps, B, 784)`` uint8, labels ``(chunk_steps, B)`` and
    weights ``(chunk_steps, B)`` float 0/1, all sharded over ``"data"`` on
    axis 1; state replicated. Steps past the epoch's end are skipped, as in
    ``train.make_chunk_runner``.
    """
    per_epoch = steps_per_epoch(n_train, config.batch_size)
    step = make_train_step(config, optimizer)
    by_row = NamedSharding(mesh, P(AXIS))

    def body(state: TrainState, batch, end):
        images, labels, weights = jax.lax.with_sharding_constraint(batch, by_row)

        def run(s: TrainState) -> TrainState:
            return step(s, images, labels, weights)[0]

        return jax.lax.cond(state.step < end, run, lambda s: s, state), None

    @partial(jax.jit, donate_argnums=(0,), out_shardings=NamedSharding(mesh, P()))
    def chunk(state: TrainState, images, labels, weights) -> TrainState:
        end = (state.step // per_epoch + 1) * per_epoch
        batches = (images, labels, weights)
        state, _ = jax.lax.scan(partial(body, end=end), state, batches)
        return state

    return chunk


def make_sharded_runner(
    config: TrainConfig,
    optimizer: optax.GradientTransformation,
    n_train: int,
    mesh: Mesh | None = None,
) -> ShardedRunner:
    """Returns ``run(state, images, labels, order) -> state`` over a device mesh.

    The data-parallel twin of ``train.make_chunk_runner``: the same steps,
    keys and padding, but ``images`` ``(N, 784)`` uint8 and ``labels``
    ``(N,)`` stay NumPy arrays on the host, and ``state`` comes in and goes
    out as a local state. Raises ``MnistJaxError`` unless the global batch
    splits evenly over the devices.
    """
    mesh = data_mesh() if mesh is None else mesh
    check_batch(config.batch_size, mesh)
    per_epoch = steps_per_epoch(n_train, config.batch_size)
    rows = local_rows(mesh, config.batch_size)
    chunk = make_sharded_chunk(config, optimizer, n_train, mesh)
    by_step_row = NamedSharding(mesh, P(None, AXIS))

    def to_global(local: np.ndarray) -> Array:
        shape = (local.shape[0], config.batch_size, *local.shape[2:])
        return jax.make_array_from_process_local_data(by_step_row, local, shape)

    checked: list[bool] = []  # the data is compared once, on the first chunk

    def run(state: TrainState, images, labels, order) -> TrainState:
        if not checked:
            check_same_data(images, labels)
            checked.append(True)
        idx = chunk_indices(np.asarray(order), int(state.step), per_epoch, config, rows)
        weights = (idx >= 0).astype(np.float32)
        idx = np.maximum(idx, 0)
        batches = (images[idx], labels[idx], weights)
        return localize(chunk(replicate(state, mesh), *map(to_global, batches)))

    log.debug(
        "data parallel over %d devices: process %d feeds rows %d:%d of each "
        "batch of %d",
        mesh.size,
        jax.process_index(),
        rows.start,
        rows.stop,
        config.batch_size,
    )
    return run
