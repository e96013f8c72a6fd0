"""Time K models trained at once against one model: seconds per training step.

    python -m benchmarks.many_models --models 8 --batch-size 128

Three programs run the same number of steps on the same synthetic data
(random uint8 digits; the values do not change the cost): the ordinary
single-model chunk runner (``train.make_chunk_runner``), the many-model
runner with one model, and the many-model runner with K models. Each is
compiled and run once before timing (warm-up excluded); the figure is the
median over ``--repeats`` runs of ``--chunks`` chunks, each waited for with
``block_until_ready``. The target is ``K=8`` at most 3x one model.

On a CPU one model at batch 128 already keeps the cores busy with its
matrix products, so ``K`` models cost close to ``K`` times as much; vmap
saves only per-step overhead there. The gain should be larger on an
accelerator that one small model leaves mostly idle (not measured here).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from mnist_jax import ensemble, train
from mnist_jax.train import TrainConfig, TrainState


def _median_seconds(
    run: Callable[[TrainState], TrainState],
    state: TrainState,
    chunks: int,
    repeats: int,
) -> float:
    state = jax.block_until_ready(run(state))  # warm-up: compile and first run
    times = []
    for _ in range(repeats):
        state = state._replace(step=jnp.zeros_like(state.step))
        started = time.perf_counter()
        for _ in range(chunks):
            state = run(state)
        jax.block_until_ready(state)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def matmul_flops(sizes: tuple[int, ...], batch_size: int) -> int:
    """Returns the matrix-product FLOPs of one training step of one model.

    Forward ``A @ w`` per layer, and backward ``dA`` and ``dw`` per layer but
    no ``dA`` for the input: ``2 B (3 sum(n_in n_out) - n_0 n_1)``.
    """
    macs = sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    return 2 * batch_size * (3 * macs - sizes[0] * sizes[1])


def measure(
    models: int, batch_size: int, chunks: int, repeats: int, augment: bool
) -> dict[str, float]:
    """Returns seconds per step of one model, of K=1 and of K=``models`` at once."""
    config = TrainConfig(
        batch_size=batch_size,
        chunk_steps=64,
        augment=dict(train.AUGMENT) if augment else None,
    )
    n_train = batch_size * config.chunk_steps * chunks
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.integers(0, 256, (n_train, 784), dtype=np.uint8))
    labels = jnp.asarray(rng.integers(0, 10, n_train, dtype=np.int32))
    steps = chunks * config.chunk_steps

    state = train.init_state(config, n_train)
    order = train.epoch_order(state.key, 0, n_train, batch_size)
    one = train.make_chunk_runner(
        config, train.make_optimizer(config, n_train), n_train
    )
    out = {
        "single": _median_seconds(
            lambda s: one(s, images, labels, order), state, chunks, repeats
        )
    }

    many = ensemble.make_many_runner(config, n_train)
    for k in sorted({1, models}):
        members = ensemble.grid(range(k), [config.lr])
        states = ensemble.init_many(config, n_train, members)
        orders = ensemble.many_orders(states.key, 0, n_train, batch_size)
        lrs = jnp.full((k,), config.lr, jnp.float32)

        def run_many(s, lrs=lrs, orders=orders):
            return many(s, lrs, images, labels, orders)

        out[f"many_{k}"] = _median_seconds(
            run_many,
            states,
            chunks,
            repeats,
        )
    return {name: seconds / steps for name, seconds in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--chunks", type=int, default=2, help="chunks of 64 steps")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--augment", action=argparse.BooleanOptionalAction, default=True
    )
    args = parser.parse_args()

    per_step = measure(
        args.models, args.batch_size, args.chunks, args.repeats, args.augment
    )
    k = args.models
    ratio = per_step[f"many_{k}"] / per_step["single"]
    flops = matmul_flops(TrainConfig().sizes, args.batch_size)
    for name, seconds in per_step.items():
        models = 1 if name == "single" else int(name.split("_")[1])
        rate = models * flops / seconds / 1e9
        print(
            f"{name:>8}: {1e3 * seconds:8.3f} ms/step  {rate:5.1f} GFLOP/s in matmuls"
        )
    print(f"K={k} costs {ratio:.2f}x one model (target: at most 3x)")
    print(f"K={k} at once takes {ratio / k:.2f} of the time of {k} separate runs")
    record = {
        "devices": str(jax.devices()),
        "augment": args.augment,
        "batch_size": args.batch_size,
        "ms_per_step": {n: 1e3 * s for n, s in per_step.items()},
        "ratio": ratio,
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()
