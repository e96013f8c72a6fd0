"""Scaling: data parallel over devices and processes, many models at once.

Each scaled run must match ordinary single-device training of the same
seed and global batch to float tolerance: only the order of the gradient
sums (data parallel) or batched matrix products (many models) may differ.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from run_helpers import blobs
from scale_worker import CONFIG, EPOCHS
from test_train import SMALL

from mnist_jax import checkpoint, cli, ensemble, parallel, train
from mnist_jax.data import Dataset, write_csv
from mnist_jax.train import TrainConfig, fit

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("scale_worker.py")
TIMEOUT_S = 300
ATOL = 1e-5
SAME_CODEGEN = "--xla_backend_optimization_level=0"


def fresh_env(**extra: str) -> dict[str, str]:
    """Returns the environment of a child process that imports this checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("XLA_")}
    env.update(PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", **extra)
    # The children compile as this process does (conftest.py sets the level):
    # code generated at another optimisation level rounds differently, and
    # Adam's v-normalised steps let that grow to ~1e-4 within 28 steps.
    env["XLA_FLAGS"] = f"{extra.get('XLA_FLAGS', '')} {SAME_CODEGEN}".strip()
    return env


def run_all(
    commands: list[list[str]], env: dict[str, str], logs: Path
) -> list[tuple[str, str]]:
    """Runs the commands at once; returns each (stdout, stderr) or fails.

    Output goes to files, not pipes, so that a chatty process cannot block
    on a full pipe while its peer waits for it in a collective.
    """
    files, procs = [], []
    for i, command in enumerate(commands):
        out, err = logs / f"proc{i}.out", logs / f"proc{i}.err"
        files.append((out, err))
        with open(out, "w") as fout, open(err, "w") as ferr:
            procs.append(subprocess.Popen(command, env=env, stdout=fout, stderr=ferr))

    # A process that fails leaves its peers waiting: stop them all at once.
    deadline = time.monotonic() + TIMEOUT_S
    while any(p.poll() is None for p in procs) and not any(p.poll() for p in procs):
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    problem = "" if time.monotonic() <= deadline else f"timed out after {TIMEOUT_S}s"
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    outputs = [(out.read_text(), err.read_text()) for out, err in files]
    codes = [proc.returncode for proc in procs]
    if problem or any(codes):
        pytest.fail(f"{problem or 'failed'}, exit codes {codes}\n" + report(outputs))
    return outputs


def report(outputs: list[tuple[str, str]]) -> str:
    """Returns each process's stderr without JAX's own debug lines, cut short."""
    parts = []
    for i, (_, err) in enumerate(outputs):
        ours = [line for line in err.splitlines() if not line.startswith("DEBUG jax")]
        parts.append(f"--- process {i} stderr ---\n" + "\n".join(ours)[-4000:])
    return "\n".join(parts)


def single_device_state(epochs: int = EPOCHS):
    images, labels = blobs(200)
    config = TrainConfig(**CONFIG, epochs=epochs)
    state, history = fit(
        images, labels, images[:50], labels[:50], config, data_parallel=False
    )
    return state, history


def free_port() -> int:
    """Returns a port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train_config_of(flags: list[str]) -> TrainConfig:
    """Returns the config that ``mnist-jax`` builds from ``flags``."""
    from mnist_jax.commands.train import config_from_args

    args = cli.build_parser().parse_args(flags)
    return config_from_args(args)


def cli_reference(config: TrainConfig, csv: Path):
    """Returns the final state of a single-device run on the CSV."""
    from mnist_jax.run import DataSpec, train_run

    return train_run(config, DataSpec(str(csv), dev_size=50)).state


# Data parallel: helpers that run on one device.


def test_a_batch_that_does_not_split_over_the_devices_is_refused():
    mesh = parallel.data_mesh(jax.devices()[:1])
    parallel.check_batch(30, mesh)

    class FourDevices:
        size = 4

    with pytest.raises(Exception, match="30 does not split over 4 devices.*28 or 32"):
        parallel.check_batch(30, FourDevices())  # type: ignore[arg-type]


def test_one_process_feeds_every_row_of_the_batch():
    assert parallel.local_rows(parallel.data_mesh(), 32) == slice(0, 32)


def test_chunk_indices_follow_the_epoch_order_and_stop_at_its_end():
    order = np.arange(12)[::-1].copy()  # 3 steps of 4, no padding
    config = TrainConfig(batch_size=4, chunk_steps=3)

    idx = parallel.chunk_indices(order, 4, 3, config, slice(2, 4))

    # Step 4 is the epoch's step 1; step 5 its last; step 6 is the next epoch.
    np.testing.assert_array_equal(idx, [[5, 4], [1, 0], [-1, -1]])


def test_replicate_and_localize_round_trip_a_state_with_its_key():
    state = train.init_state(TrainConfig(**SMALL), 100)

    back = parallel.localize(parallel.replicate(state, parallel.data_mesh()))

    chex.assert_trees_all_equal(back.params, state.params)
    np.testing.assert_array_equal(
        jax.random.key_data(back.key), jax.random.key_data(state.key)
    )


def test_data_parallel_on_one_device_matches_the_default_path():
    images, labels = blobs(100)
    config = TrainConfig(**SMALL, epochs=2)  # dropout on

    plain, _ = fit(images, labels, images, labels, config, data_parallel=False)
    split, _ = fit(images, labels, images, labels, config, data_parallel=True)

    chex.assert_trees_all_close(plain.params, split.params, atol=ATOL)


# Data parallel: several devices, several processes.


@pytest.mark.slow
def test_four_cpu_devices_in_one_process_match_one_device(tmp_path):
    env = fresh_env(XLA_FLAGS="--xla_force_host_platform_device_count=4")
    run_all([[sys.executable, str(WORKER), str(tmp_path)]], env, tmp_path)
    facts = json.loads((tmp_path / "facts.json").read_text())
    with np.load(tmp_path / "state.npz") as saved:
        split = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    state, history = single_device_state()

    assert facts["devices"] == 4 and facts["step"] == state.step == 28
    assert facts["all_reduce"] and facts["image_rows"] == [8]  # 32 rows / 4
    assert "CpuDevice(id=0)" in facts["local"]
    assert "30 does not split over 4 devices" in facts["batch_error"]
    losses = [r.train_loss for r in history]
    np.testing.assert_allclose(facts["losses"], losses, rtol=1e-5)
    chex.assert_trees_all_close(
        split, jax.tree.leaves((state.params, state.opt_state)), atol=ATOL
    )


@pytest.mark.slow
def test_two_processes_each_feeding_half_of_every_batch_match_one_device(
    tmp_path,
):
    images, labels = blobs(250)
    csv = tmp_path / "blobs.csv"
    write_csv(csv, Dataset(images, labels, "blobs"))
    port = free_port()
    flags = [
        "train", "--data", str(csv), "--dev-size", "50", "--epochs", "2",
        "--batch-size", "32", "--sizes", "784,16,10", "--no-progress",
    ]  # fmt: skip
    env = fresh_env(JAX_COORDINATOR_BIND_ADDRESS=f"127.0.0.1:{port}")
    commands = [
        [sys.executable, "-m", "mnist_jax", "-v", *flags,
         "--out", str(tmp_path / f"out{i}"),
         "--coordinator", f"127.0.0.1:{port}",
         "--num-processes", "2", "--process-id", str(i)]
        for i in range(2)
    ]  # fmt: skip
    (out0, err0), (out1, err1) = run_all(commands, env, tmp_path)

    split, _ = checkpoint.load_params(tmp_path / "out0")
    config = train_config_of(flags)
    reference = cli_reference(config, csv)

    assert "process 0 feeds rows 0:16 of each batch of 32" in err0
    assert "process 1 feeds rows 16:32 of each batch of 32" in err1
    assert "final dev accuracy" in out0
    assert "epoch" not in out1 and not (tmp_path / "out1").exists()
    chex.assert_trees_all_close(split, reference.params, atol=ATOL)


def test_bad_multi_process_flags_are_one_line_errors(capsys):
    for flags, message in [
        (["--num-processes", "2", "--process-id", "2"], "--process-id must be in"),
        (["--coordinator", "localhost"], "--coordinator must be HOST:PORT"),
        (["--seeds", "2", "--process-id", "0"], "--seeds and --lrs train in one"),
    ]:
        assert cli.main(["train", *flags]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


# Many models at once.


def assert_same_model(states, m, single):
    model_m = ensemble.member_state(states, m)
    chex.assert_trees_all_close(model_m.params, single.params, atol=ATOL)
    chex.assert_trees_all_close(model_m.opt_state, single.opt_state, atol=ATOL)
    assert int(model_m.step) == int(single.step)
    np.testing.assert_array_equal(
        jax.random.key_data(model_m.key), jax.random.key_data(single.key)
    )


@pytest.mark.slow
def test_model_k_of_three_seeds_equals_a_single_run_with_seed_k():
    images, labels = blobs(160)
    config = TrainConfig(**CONFIG, epochs=2)  # dropout and augmentation on
    members = ensemble.grid([0, 1, 2], [config.lr])

    states, history = ensemble.fit_many(
        images, labels, images[:40], labels[:40], config, members
    )

    for k in range(3):
        single, single_history = fit(
            images,
            labels,
            images[:40],
            labels[:40],
            ensemble.member_config(config, members[k]),
        )
        assert_same_model(states, k, single)
        assert history[-1][k].eval_accuracy == single_history[-1].eval_accuracy
        assert history[-1][k].lr == pytest.approx(single_history[-1].lr, rel=1e-6)


@pytest.mark.slow
def test_a_learning_rate_grid_trains_each_rate_as_its_own_run():
    images, labels = blobs(96)
    config = TrainConfig(**SMALL, epochs=3, decay_steps=2, decay_rate=0.5)
    members = ensemble.grid([5], [1e-3, 1e-2])

    states, history = ensemble.fit_many(
        images, labels, images[:20], labels[:20], config, members
    )

    for m, member in enumerate(members):
        single, single_history = fit(
            images,
            labels,
            images[:20],
            labels[:20],
            ensemble.member_config(config, member),
        )
        assert_same_model(states, m, single)
        assert history[-1][m].extra == {"model": m, "seed": 5, "initial_lr": member.lr}
    assert history[-1][1].lr == pytest.approx(10 * history[-1][0].lr, rel=1e-6)


def test_grid_is_seed_major_and_refuses_repeats():
    members = ensemble.grid([0, 1], [1e-3, 3e-3])

    assert members == [(0, 1e-3), (0, 3e-3), (1, 1e-3), (1, 3e-3)]
    with pytest.raises(Exception, match="repeat"):
        ensemble.grid([0, 0], [1e-3])
    with pytest.raises(Exception, match="must be positive"):
        ensemble.grid([0], [0.0])


def test_spread_is_mean_population_std_min_and_max():
    spread = ensemble.Spread.of([0.9, 0.95, 1.0])

    assert spread.mean == pytest.approx(0.95)
    assert spread.std == pytest.approx(np.std([0.9, 0.95, 1.0]))
    assert (spread.min, spread.max) == (0.9, 1.0)
    assert str(spread) == "0.9500 ± 0.0408 (min 0.9000, max 1.0000)"


def test_train_seeds_and_lrs_writes_one_checkpoint_per_model(tmp_path, capsys):
    images, labels = blobs(150)
    csv = tmp_path / "blobs.csv"
    write_csv(csv, Dataset(images, labels, "blobs"))
    out = tmp_path / "run"

    status = cli.main(
        ["train", "--data", str(csv), "--dev-size", "30", "--epochs", "1",
         "--batch-size", "32", "--sizes", "784,16,10", "--no-augment",
         "--seed", "3", "--seeds", "2", "--lrs", "1e-3,3e-3",
         "--no-progress", "--out", str(out)]
    )  # fmt: skip

    text = capsys.readouterr().out
    assert status == 0
    assert "epoch   1/1  4 models" in text
    assert "model  3  seed   4  lr 0.003" in text
    assert "eval accuracy of 4 models:" in text
    lines = (out / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [(r["model"], r["seed"], r["initial_lr"]) for r in rows] == [
        (0, 3, 1e-3), (1, 3, 3e-3), (2, 4, 1e-3), (3, 4, 3e-3)
    ]  # fmt: skip
    _, config = checkpoint.load_params(out / "model-3")
    assert (config.seed, config.lr) == (4, 3e-3)
    summary = json.loads((out / "summary.json").read_text())
    accuracies = [m["eval_accuracy"] for m in summary["models"]]
    assert summary["eval_accuracy"]["mean"] == pytest.approx(np.mean(accuracies))

    # A model folder is scored on the run's own split without --data.
    capsys.readouterr()
    assert cli.main(["evaluate", "--checkpoint", str(out / "model-3"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["accuracy"] == pytest.approx(accuracies[3])


def test_many_model_state_stacks_every_leaf_but_the_shared_step():
    config = TrainConfig(**SMALL)
    states = ensemble.init_many(config, 100, ensemble.grid([0, 1, 2], [1e-3]))

    assert states.step.shape == ()
    assert states.params[0]["w"].shape == (3, 784, 16)
    assert states.stats.shape == (3, 3)
    one = train.init_state(TrainConfig(**{**SMALL, "seed": 2}), 100)
    chex.assert_trees_all_equal(ensemble.member_state(states, 2).params, one.params)
    assert jnp.issubdtype(states.key.dtype, jax.dtypes.prng_key)
