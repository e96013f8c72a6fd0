"""The benchmark run: the product and its peers, measured the same way.

``run(plan)`` returns the whole report as a JSON-ready dict; ``report.py``
turns it into Markdown. The JAX figures go through ``mnist_jax.bench``, which
drives the product's own jitted training chunk, ``predict`` and
``augment_batch``; the peers are in this folder.
"""

from __future__ import annotations

import datetime
import logging
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import jax.numpy as jnp
import numpy as np

from mnist_jax import augment, bench, model, train, warp
from mnist_jax.bench import Record

log = logging.getLogger("benchmarks")

SCHEMA = "mnist-jax-bench/1"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class Plan:
    """How much to measure: batch sizes, steps per timed call, repeats.

    steps: training steps in one timed call, per batch size.
    aug_repeats: timed repeats of augmentation; a repeat takes milliseconds,
    so it gets more of them than the others.
    """

    name: str
    batches: tuple[int, ...] = (128, 1024, 8192)
    steps: dict[int, int] = field(default_factory=lambda: {128: 64, 1024: 16, 8192: 4})
    repeats: int = 5
    n_train: int = 60_000
    epoch_batch: int = 128
    epoch_repeats: int = 3
    infer_examples: int = 10_000
    infer_batch: int = 1000
    aug_batch: int = 1024
    aug_calls: int = 8
    aug_repeats: int = 15
    scipy_images: int = 256
    numpy_aug_steps: dict[int, int] = field(default_factory=lambda: {128: 2, 1024: 1})
    matmul_n: int = 2048
    ceiling_batches: tuple[int, ...] = (128, 1024, 8192)


PLANS = {
    "full": Plan("full"),
    "quick": Plan(
        "quick",
        steps={128: 64, 1024: 8, 8192: 2},
        repeats=3,
        epoch_repeats=1,
        aug_calls=4,
        aug_repeats=5,
        scipy_images=64,
        numpy_aug_steps={128: 1},
    ),
    # For the tests: every code path, tiny sizes, seconds.
    "tiny": Plan(
        "tiny",
        batches=(32,),
        steps={32: 8},
        repeats=2,
        n_train=256,
        epoch_batch=32,
        epoch_repeats=1,
        infer_examples=100,
        infer_batch=50,
        aug_batch=32,
        aug_calls=1,
        aug_repeats=2,
        scipy_images=4,
        numpy_aug_steps={32: 1},
        matmul_n=64,
        ceiling_batches=(32,),
    ),
}


def synthetic_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Returns ``(N, 784)`` uint8 noise images and ``(N,)`` int32 labels.

    Throughput does not depend on what the pixels show; the real digits can
    be given with ``--data``.
    """
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 784), dtype=np.uint8)
    return images, rng.integers(0, 10, n).astype(np.int32)


class Run:
    """Collects records, notes and memory figures while the sections run."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.records: list[Record] = []
        self.skipped: list[dict[str, str]] = []
        self.memory: dict[str, Any] = {}
        self.started = time.perf_counter()

    def add(self, record: Record) -> Record:
        log.info(
            "%-6s %-16s batch %-5s aug %-5s %12.1f %s",
            record.system,
            record.measure,
            record.batch,
            record.augment,
            record.median,
            record.unit,
        )
        self.records.append(record)
        return record

    def skip(self, system: str, why: str) -> None:
        log.info("skipped %s: %s", system, why)
        self.skipped.append({"system": system, "why": why})

    def section(self, name: str, body: Callable[[], None]) -> None:
        """Runs ``body`` and records the peak memory it reached."""
        exact = bench.reset_peak_rss()
        started = time.perf_counter()
        body()
        self.memory[name] = {
            "peak_rss_bytes": bench.peak_rss_bytes(),
            "peak_rss_is_per_section": exact,
            "device": bench.device_memory(),
            "seconds": round(time.perf_counter() - started, 2),
        }

    def find(
        self, system: str, measure: str, batch=None, augment=None
    ) -> Record | None:
        for r in self.records:
            same_batch = batch is None or r.batch == batch
            same_augment = augment is None or r.augment == augment
            if (
                (r.system, r.measure) == (system, measure)
                and same_batch
                and same_augment
            ):
                return r
        return None


def run(
    plan: Plan,
    *,
    with_torch: bool = True,
    torch_threads: int | None = None,
    data: tuple[np.ndarray, np.ndarray] | None = None,
    data_source: str = "synthetic",
) -> dict[str, Any]:
    """Runs every section of ``plan``; returns the report as a JSON-ready dict."""
    images, labels = data if data is not None else synthetic_digits(plan.n_train)
    images, labels = images[: plan.n_train], labels[: plan.n_train]
    current = Run(plan)
    sizes = model.DEFAULT_SIZES
    flops = bench.flops_per_example(sizes)

    ceiling: dict[str, Any] = {}
    current.section("ceiling", lambda: ceiling.update(_ceiling(plan, sizes)))
    current.section("jax", lambda: _jax(current, images, labels))
    current.section("numpy", lambda: _numpy(current, images, labels))
    current.section("scipy", lambda: _scipy(current, images))
    torch_version = None
    if with_torch:
        torch_version = _torch_in_child(current, images, labels, torch_threads)
    else:
        current.skip("torch", "left out with --no-torch")

    _remeasure_peak(plan, ceiling)
    _add_fractions(current.records, flops, ceiling)
    versions = bench.versions()
    versions["torch"] = torch_version
    return {
        "schema": SCHEMA,
        "plan": plan.name,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - current.started, 1),
        "machine": {**bench.machine(), "thread_pools": thread_pools()},
        "versions": versions,
        "data": {"source": data_source, "examples": int(len(images))},
        "model": {"sizes": list(sizes), "flops_per_example": flops},
        "ceiling": ceiling,
        "results": [r.to_dict() for r in current.records],
        "targets": targets(current),
        "memory": current.memory,
        "skipped": current.skipped,
    }


def thread_pools() -> list[dict[str, Any]]:
    """Returns the BLAS and OpenMP pools NumPy and PyTorch use, where known.

    On a busy machine a pool with more threads than free cores can be many
    times slower than one thread; this records what the peers ran with.
    """
    env = {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"environment": env}]
    keys = ("internal_api", "num_threads", "version")
    pools = [{k: p.get(k) for k in keys} for p in threadpool_info()]
    return [{"environment": env}, *pools]


def _ceiling(plan: Plan, sizes) -> dict[str, Any]:
    peak = bench.matmul_rate(plan.matmul_n, plan.repeats).rates()
    log.info("matmul %d: %.1f GFLOP/s at best", plan.matmul_n, peak["max"] / 1e9)
    same = {}
    for batch in plan.ceiling_batches:
        steps = plan.steps.get(batch, 4)
        rates = bench.same_shape_rate(sizes, batch, steps, plan.repeats).rates()
        same[str(batch)] = rates
        log.info("same-shape %d: %.1f GFLOP/s at best", batch, rates["max"] / 1e9)
    n = plan.matmul_n
    a = np.random.default_rng(0).random((n, n), np.float32)
    blas = bench.time_calls(lambda: a @ a, plan.repeats, work=2.0 * n**3).rates()
    return {
        "matmul_n": n,
        "matmul_flops_per_s": peak,
        "same_shape_flops_per_s": same,
        "numpy_matmul_flops_per_s": blas,
    }


def _remeasure_peak(plan: Plan, ceiling: dict[str, Any]) -> None:
    """Times the peak matmul again after every section; keeps the faster.

    On a shared virtual machine the speed of the whole machine drifts: in
    five full runs the start-of-run peak ranged from 102 to 206 GFLOP/s,
    and a low one made every share of it look better than it was. Noise
    only slows a matmul down, so the better of two readings is the fairer.
    """
    if not ceiling:
        return
    late = bench.matmul_rate(plan.matmul_n, plan.repeats).rates()
    ceiling["matmul_flops_per_s_at_start"] = ceiling["matmul_flops_per_s"]
    ceiling["matmul_flops_per_s_at_end"] = late
    if late["max"] > ceiling["matmul_flops_per_s"]["max"]:
        ceiling["matmul_flops_per_s"] = late
    best = late["max"] / 1e9
    log.info("matmul %d at the end: %.1f GFLOP/s at best", plan.matmul_n, best)


def _jax(current: Run, images_np: np.ndarray, labels_np: np.ndarray) -> None:
    plan = current.plan
    images = jnp.asarray(images_np)
    labels = jnp.asarray(labels_np, jnp.int32)
    runners: dict[tuple[int, int, bool], bench.TrainRunner] = {}

    def runner(batch: int, steps: int, with_aug: bool) -> bench.TrainRunner:
        key = (batch, steps, with_aug)
        if key not in runners:
            config = train.TrainConfig(
                batch_size=batch,
                chunk_steps=steps,
                augment=dict(train.AUGMENT) if with_aug else None,
            )
            runners[key] = bench.train_runner(images, labels, config)
            seconds = runners[key].compile_seconds
            current.add(
                Record.once(
                    "jax", "compile train", seconds, batch, with_aug, steps=steps
                )
            )
        return runners[key]

    for batch in plan.batches:
        steps = plan.steps[batch]
        pair = [runner(batch, steps, with_aug) for with_aug in (False, True)]
        timings = bench.training_throughput(pair, images, labels, plan.repeats)
        for with_aug, timing in zip((False, True), timings, strict=True):
            current.add(
                Record.from_timing(
                    "jax", "train", timing, batch=batch, augment=with_aug, steps=steps
                )
            )

    per_epoch = train.steps_per_epoch(len(images_np), plan.epoch_batch)
    chunk = min(train.TrainConfig().chunk_steps, per_epoch)
    for with_aug in (False, True):
        timing = bench.epoch_seconds(
            runner(plan.epoch_batch, chunk, with_aug),
            images,
            labels,
            plan.epoch_repeats,
        )
        current.add(
            Record.from_timing(
                "jax",
                "epoch",
                timing,
                batch=plan.epoch_batch,
                augment=with_aug,
                seconds=timing.median_seconds,
            )
        )

    params = runners[(plan.batches[0], plan.steps[plan.batches[0]], False)].state.params
    infer = images_np[: plan.infer_examples]
    timing, compile_s = bench.inference_throughput(
        params, infer, plan.infer_batch, plan.repeats
    )
    current.add(Record.from_timing("jax", "inference", timing, batch=plan.infer_batch))
    current.add(Record.once("jax", "compile predict", compile_s, plan.infer_batch))

    floats = model.to_inputs(images[: plan.aug_batch], jnp.float32)
    # Beside the product's sampler, the pure-JAX one that the compiled
    # kernel replaces on the CPU.
    on_cpu = images.devices().pop().platform == "cpu"
    samplers = ("auto", "jax") if warp.preferred() and on_cpu else ("auto",)
    timings, compiles = bench.augment_throughput(
        floats, augment.AugmentConfig(), plan.aug_calls, plan.aug_repeats, samplers
    )
    for sampler, timing in zip(samplers, timings, strict=True):
        measure = "augment" if sampler == "auto" else "augment, JAX sampler"
        current.add(
            Record.from_timing(
                "jax", measure, timing, batch=plan.aug_batch, unit="images/s"
            )
        )
    current.add(
        Record.once("jax", "compile augment", compiles[0], plan.aug_batch, True)
    )


def _numpy(current: Run, images: np.ndarray, labels: np.ndarray) -> None:
    from benchmarks import numpy_mlp, scipy_augment

    plan = current.plan
    sizes = model.DEFAULT_SIZES
    plain = numpy_mlp.NumpyTrainer(images, labels, sizes)
    for batch in plan.batches:
        steps = plan.steps[batch]
        timing = bench.time_calls(
            partial(plain.steps, batch, steps), plan.repeats, work=batch * steps
        )
        current.add(
            Record.from_timing(
                "numpy", "train", timing, batch=batch, augment=False, steps=steps
            )
        )

    augmented = numpy_mlp.NumpyTrainer(
        images, labels, sizes, augment=scipy_augment.augment_images
    )
    for batch, steps in plan.numpy_aug_steps.items():
        timing = bench.time_calls(
            partial(augmented.steps, batch, steps),
            max(plan.repeats // 2, 1),
            work=batch * steps,
            warmup=0,
        )
        current.add(
            Record.from_timing(
                "numpy",
                "train",
                timing,
                batch=batch,
                augment=True,
                steps=steps,
                note="SciPy per-image augmentation inside the step",
            )
        )
    left_out = sorted(set(plan.batches) - set(plan.numpy_aug_steps))
    if left_out:
        current.skip(
            "numpy train with augmentation",
            f"batches {left_out} left out: the SciPy loop would take minutes",
        )

    timing = bench.time_calls(
        lambda: plain.epoch(plan.epoch_batch),
        plan.epoch_repeats,
        work=len(images),
        warmup=0,
    )
    current.add(
        Record.from_timing(
            "numpy",
            "epoch",
            timing,
            batch=plan.epoch_batch,
            augment=False,
            seconds=timing.median_seconds,
        )
    )

    infer = images[: plan.infer_examples]
    timing = bench.time_calls(
        lambda: plain.predict(infer, plan.infer_batch), plan.repeats, work=len(infer)
    )
    current.add(
        Record.from_timing("numpy", "inference", timing, batch=plan.infer_batch)
    )


def _scipy(current: Run, images: np.ndarray) -> None:
    from benchmarks import scipy_augment

    plan = current.plan
    floats = images[: plan.scipy_images].astype(np.float32) / 255.0
    rng = np.random.default_rng(0)
    timing = bench.time_calls(
        lambda: scipy_augment.augment_images(floats, rng),
        plan.repeats,
        work=len(floats),
    )
    current.add(
        Record.from_timing(
            "scipy",
            "augment",
            timing,
            batch=len(floats),
            unit="images/s",
            note="one image at a time: rotate, shift, zoom, crop",
        )
    )


def _torch_in_child(
    current: Run, images: np.ndarray, labels: np.ndarray, threads: int | None
) -> str | None:
    """Runs the PyTorch section in a fresh process; returns torch's version.

    PyTorch's OpenMP pool and XLA's thread pool, both in one process, fought
    over the two cores: PyTorch's batch-1024 figure ranged from 2,907 to
    157,202 examples/s between repeats. Its own process (started with
    ``spawn``, so no JAX state is inherited) gives steady figures; this
    process waits meanwhile. The child's records and memory join ``current``.
    """
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        job = pool.submit(_torch_child, current.plan, images, labels, threads)
        outcome = job.result()
    if "skipped" in outcome:
        current.skip("torch", outcome["skipped"])
        return None
    for record in outcome["records"]:
        current.add(Record.from_dict(record))
    current.memory.update(outcome["memory"])
    return outcome["version"]


def _torch_child(
    plan: Plan, images: np.ndarray, labels: np.ndarray, threads: int | None
) -> dict[str, Any]:
    """The PyTorch section, run inside the child process of ``_torch_in_child``."""
    try:
        from benchmarks import torch_mlp
    except ImportError as err:
        return {"skipped": f"PyTorch is not installed ({err})"}
    child = Run(plan)
    used = torch_mlp.set_threads(threads or os.cpu_count() or 1)
    child.section("torch", lambda: _torch(child, torch_mlp, images, labels, used))
    return {
        "records": [r.to_dict() for r in child.records],
        "memory": child.memory,
        "version": torch_mlp.VERSION,
    }


def _torch(current: Run, torch_mlp, images, labels, threads: int) -> None:
    plan = current.plan
    trainer = torch_mlp.TorchTrainer(images, labels, model.DEFAULT_SIZES)
    for batch in plan.batches:
        steps = plan.steps[batch]
        timings = bench.time_interleaved(
            [partial(trainer.steps, batch, steps, a) for a in (False, True)],
            [batch * steps] * 2,
            plan.repeats,
        )
        for with_aug, timing in zip((False, True), timings, strict=True):
            current.add(
                Record.from_timing(
                    "torch",
                    "train",
                    timing,
                    batch=batch,
                    augment=with_aug,
                    steps=steps,
                    threads=threads,
                )
            )

    for with_aug in (False, True):
        timing = bench.time_calls(
            partial(trainer.epoch, plan.epoch_batch, with_aug),
            plan.epoch_repeats,
            work=len(images),
            warmup=0,
        )
        current.add(
            Record.from_timing(
                "torch",
                "epoch",
                timing,
                batch=plan.epoch_batch,
                augment=with_aug,
                seconds=timing.median_seconds,
                threads=threads,
            )
        )

    infer = images[: plan.infer_examples]
    timing = bench.time_calls(
        lambda: trainer.predict(infer, plan.infer_batch), plan.repeats, work=len(infer)
    )
    current.add(
        Record.from_timing(
            "torch", "inference", timing, batch=plan.infer_batch, threads=threads
        )
    )

    import torch

    floats = torch.from_numpy(images[: plan.aug_batch]).float() / 255
    timing = bench.time_calls(
        lambda: [trainer.augment_batch(floats) for _ in range(plan.aug_calls)],
        plan.repeats,
        work=plan.aug_calls * len(floats),
    )
    current.add(
        Record.from_timing(
            "torch",
            "augment",
            timing,
            batch=len(floats),
            unit="images/s",
            threads=threads,
            note="affine_grid + grid_sample",
        )
    )


def _add_fractions(records: list[Record], flops, ceiling) -> None:
    """Adds achieved GFLOP/s and its fraction of the ceilings to FLOP records.

    A ceiling is the best rate of its repeats (noise only ever slows a
    matmul down), so the fractions err on the low side.
    """
    if not ceiling:
        return
    peak = ceiling["matmul_flops_per_s"]["max"]
    same = ceiling["same_shape_flops_per_s"]
    for r in records:
        per_example = {"train": flops["train"], "inference": flops["inference"]}.get(
            r.measure
        )
        if per_example is None or r.unit != "examples/s":
            continue
        achieved = r.median * per_example
        r.extra["gflop_per_s"] = achieved / 1e9
        r.extra["of_matmul_peak"] = achieved / peak
        if r.measure == "train" and str(r.batch) in same:
            r.extra["of_same_shape"] = achieved / same[str(r.batch)]["max"]


def _ratio(a: Record | None, b: Record | None) -> float | None:
    if a is None or b is None:
        return None
    return a.median / b.median


def targets(current: Run) -> list[dict[str, Any]]:
    """Returns the speed targets, each with its measured value and whether met.

    ``met`` is None where a figure is missing (for example without torch).
    All ratios are of medians.
    """
    find = current.find
    rows = []

    def add(name: str, value: float | None, goal: float, at_least: bool = True):
        met = None if value is None else (value >= goal if at_least else value <= goal)
        rows.append(
            {
                "target": name,
                "value": value,
                "goal": goal,
                "at_least": at_least,
                "met": met,
            }
        )

    big, small = 1024, 128
    add(
        f"train b{big}: JAX / PyTorch",
        _ratio(find("jax", "train", big, False), find("torch", "train", big, False)),
        1.5,
    )
    jax_big = find("jax", "train", big, False)
    add(
        f"train b{big}: JAX share of the matmul peak",
        None if jax_big is None else jax_big.extra.get("of_matmul_peak"),
        0.6,
    )
    add(
        f"train b{small}: JAX / PyTorch",
        _ratio(
            find("jax", "train", small, False), find("torch", "train", small, False)
        ),
        3.5,
    )
    add(
        "inference: JAX / PyTorch",
        _ratio(find("jax", "inference"), find("torch", "inference")),
        1.0,
    )
    for batch in current.plan.batches:
        add(
            f"train b{batch}: JAX with / without augmentation",
            _ratio(
                find("jax", "train", batch, True), find("jax", "train", batch, False)
            ),
            0.7,
        )
    add(
        f"augment b{current.plan.aug_batch}: JAX / SciPy per-image loop",
        _ratio(find("jax", "augment"), find("scipy", "augment")),
        100.0,
    )
    step_ratio = _ratio(
        find("jax", "train", big, False), find("jax", "train", big, True)
    )
    add(
        f"train b{big}: JAX step time with / without augmentation",
        step_ratio,
        1.6,
        at_least=False,
    )
    return rows
