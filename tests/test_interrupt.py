"""Ctrl-C and SIGTERM through the real command line, in a child process.

The child trains on 1,000 small digits in steps of 8 with augmentation on,
so the data order, dropout and augmentation all draw from the PRNG stream.
Once it prints its first epoch it gets the signal; it must checkpoint, say
where, exit with 130, and a ``--resume`` must then end with the very same
bytes as a run that was never interrupted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from run_helpers import blobs_csv

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 4
STEPS_PER_EPOCH = 125  # 1,000 training rows in batches of 8


def command(csv: Path, out: Path, *extra: str) -> list[str]:
    flags = ["--data", str(csv), "--dev-size", "40", "--sizes", "784,16,10"]
    flags += ["--batch-size", "8", "--chunk-steps", "3", "--no-progress"]
    flags += ["--out", str(out), *extra]
    return [sys.executable, "-m", "mnist_jax", "train", *flags]


def child(args: list[str], **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    return subprocess.Popen(args, cwd=ROOT, env=env, text=True, **kwargs)


def finish(args: list[str]) -> subprocess.CompletedProcess:
    run = child(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = run.communicate(timeout=300)
    return subprocess.CompletedProcess(args, run.returncode, out, err)


def arrays(run_dir: Path) -> dict[str, np.ndarray]:
    with np.load(run_dir / "checkpoint.npz", allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return blobs_csv(tmp_path_factory.mktemp("interrupt") / "blobs.csv", n=1040)


@pytest.fixture(scope="module")
def uninterrupted(data) -> Path:
    out = data.parent / "whole"
    done = finish(command(data, out, "--epochs", str(EPOCHS)))
    assert done.returncode == 0, done.stderr
    return out


def interrupt(data: Path, out: Path, signum: int) -> int:
    """Starts a run, sends ``signum`` after its first epoch; returns the saved step.

    Checks the exit status, the message and that the run stopped early.
    """
    run = child(
        command(data, out, "--epochs", str(EPOCHS)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert run.stdout is not None
    first = run.stdout.readline()
    run.send_signal(signum)
    rest, err = run.communicate(timeout=300)

    assert first.startswith(f"epoch   1/{EPOCHS}"), first + err
    assert run.returncode == 130, first + rest + err
    name = signal.Signals(signum).name
    assert f"mnist-jax train: {name} stopped the run in epoch " in err
    assert f"checkpoint written to {out / 'checkpoint.npz'}" in err
    assert f"continue with mnist-jax train --out {out} --resume" in err
    assert "Traceback" not in err
    stopped_at = int(arrays(out)["step"])
    assert STEPS_PER_EPOCH <= stopped_at < EPOCHS * STEPS_PER_EPOCH
    return stopped_at


@pytest.mark.slow
def test_ctrl_c_checkpoints_exits_130_and_resume_gives_the_same_bytes(
    data, uninterrupted
):
    out = data.parent / "SIGINT"
    stopped_at = interrupt(data, out, signal.SIGINT)

    resume = ["train", "--out", str(out), "--resume", "--no-progress"]
    resumed = finish([sys.executable, "-m", "mnist_jax", *resume])

    assert resumed.returncode == 0, resumed.stderr
    whole, parts = arrays(uninterrupted), arrays(out)
    assert sorted(whole) == sorted(parts)
    for key in whole:
        assert whole[key].tobytes() == parts[key].tobytes(), (key, stopped_at)
    assert metrics(out) == metrics(uninterrupted)


@pytest.mark.slow
def test_sigterm_stops_the_same_way(data):
    out = data.parent / "SIGTERM"

    step = interrupt(data, out, signal.SIGTERM)

    assert len(metrics(out)) == step // STEPS_PER_EPOCH


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.1, 0.2, 0.3, 0.5, 0.8, 1.2])
def test_ctrl_c_while_starting_up_exits_130_without_a_traceback(tmp_path, delay):
    # Before training the signal can land in an import or in a JAX garbage-
    # collection callback, where Python drops the KeyboardInterrupt.
    proc = child(
        command(blobs_csv(tmp_path / "blobs.csv"), tmp_path / "run"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)

    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    # Either the start-up stops at once, or training stops after its first
    # chunk and says where it saved.
    assert "mnist-jax: interrupted" in err or "SIGINT stopped the run" in err, err
