"""Checkpoints: one clear error for each bad file, no pickle, atomic writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import chex
import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnist_jax import checkpoint
from mnist_jax.cli import main
from mnist_jax.errors import MnistJaxError
from mnist_jax.train import TrainConfig, init_state

ROOT = Path(__file__).resolve().parents[1]
CONFIG = TrainConfig(sizes=(784, 8, 10), augment=None, epochs=1)
N_TRAIN = 100


def saved(folder: Path, config: TrainConfig = CONFIG, step: int = 0) -> Path:
    """Saves a fresh state with ``step`` set; returns the checkpoint file."""
    state = init_state(config, N_TRAIN)
    return checkpoint.save(folder, state._replace(step=state.step + step), config)


def arrays_of(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def test_a_saved_state_loads_back_exactly(tmp_path):
    state = init_state(CONFIG, N_TRAIN)
    checkpoint.save(tmp_path, state, CONFIG)

    loaded, config = checkpoint.load(tmp_path, N_TRAIN)

    assert config == CONFIG
    chex.assert_trees_all_equal(
        jax.tree_util.tree_map(np.asarray, loaded._replace(key=0)),
        jax.tree_util.tree_map(np.asarray, state._replace(key=0)),
    )
    keys = (jax.random.key_data(s.key) for s in (loaded, state))
    np.testing.assert_array_equal(*keys)


def test_a_missing_checkpoint_is_one_clear_error(tmp_path, capsys):
    with pytest.raises(MnistJaxError, match=r"checkpoint\.npz: no checkpoint there"):
        checkpoint.load_params(tmp_path)

    assert main(["evaluate", "--checkpoint", str(tmp_path / "gone.npz")]) == 2
    err = capsys.readouterr().err
    assert "gone.npz: no checkpoint there; pass the --out folder of a run" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("keep", [0, 3, 100, 0.5, -1])
def test_a_truncated_checkpoint_is_one_clear_error(tmp_path, keep):
    path = saved(tmp_path)
    data = path.read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else keep
    path.write_bytes(data[:cut])

    with pytest.raises(MnistJaxError, match=r"checkpoint\.npz: the checkpoint is"):
        checkpoint.load(tmp_path, N_TRAIN)
    with pytest.raises(MnistJaxError, match="truncated or corrupted|is empty"):
        checkpoint.load_params(tmp_path)


def test_corrupted_bytes_in_the_weights_are_one_clear_error(tmp_path):
    path = saved(tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 3 : len(data) // 3 + 8] = b"garbage!"
    path.write_bytes(bytes(data))

    with pytest.raises(MnistJaxError, match="truncated or corrupted.*Bad CRC-32"):
        checkpoint.load_params(tmp_path)


def test_a_plain_npy_file_is_not_taken_for_a_checkpoint(tmp_path):
    np.save(tmp_path / "checkpoint.npy", np.zeros(3))
    (tmp_path / "checkpoint.npy").rename(tmp_path / "checkpoint.npz")

    with pytest.raises(MnistJaxError, match="the checkpoint is not an .npz archive"):
        checkpoint.load_params(tmp_path)


def test_a_checkpoint_with_an_object_array_is_refused_without_unpickling(tmp_path):
    path = saved(tmp_path)
    arrays = arrays_of(path)
    trap = np.array([Unpicklable()], dtype=object)  # would raise if unpickled
    np.savez(path, **arrays, trap=trap)  # type: ignore[arg-type]

    with pytest.raises(MnistJaxError, match="object array, which only pickle"):
        checkpoint.load(tmp_path, N_TRAIN)


class Unpicklable:
    def __reduce__(self):
        return (_explode, ())


def _explode():
    raise AssertionError("a checkpoint was unpickled")


def test_a_checkpoint_of_other_layer_sizes_is_refused_on_resume(tmp_path, capsys):
    saved(tmp_path)
    other = TrainConfig(sizes=(784, 16, 10), augment=None, epochs=1)

    with pytest.raises(
        MnistJaxError,
        match=r"is for layer sizes \[784, 8, 10\], not \[784, 16, 10\]",
    ):
        checkpoint.load(tmp_path, N_TRAIN, other)


def test_weights_that_disagree_with_the_saved_sizes_are_refused(tmp_path):
    path = saved(tmp_path)
    arrays = arrays_of(path)
    arrays["params/0/w"] = np.zeros((784, 9), np.float32)
    np.savez(path, **arrays)  # type: ignore[arg-type]

    message = r"params/0/w has shape \(784, 9\), expected \(784, 8\).*architecture"
    with pytest.raises(MnistJaxError, match=message):
        checkpoint.load_params(tmp_path)
    with pytest.raises(MnistJaxError, match=message):
        checkpoint.load(tmp_path, N_TRAIN)


@pytest.mark.parametrize(
    "weights, message",
    [
        (np.full((784, 8), np.nan, np.float32), "holds NaN or infinite values"),
        (np.ones((784, 8), np.int8), "holds int8 values, not floats"),
    ],
)
def test_weights_no_run_could_have_saved_are_refused(tmp_path, weights, message):
    path = saved(tmp_path)
    arrays = arrays_of(path)
    arrays["params/0/w"] = weights
    np.savez(path, **arrays)  # type: ignore[arg-type]

    with pytest.raises(MnistJaxError, match=f"params/0/w {message}.*corrupted"):
        checkpoint.load_params(tmp_path)
    with pytest.raises(MnistJaxError, match=f"params/0/w {message}.*corrupted"):
        checkpoint.load(tmp_path, N_TRAIN)


def test_a_checkpoint_of_another_format_or_version_is_refused(tmp_path):
    path = saved(tmp_path)
    arrays = arrays_of(path)
    meta = json.loads(str(arrays["meta"]))
    arrays["meta"] = np.array(json.dumps({**meta, "version": 99}))
    np.savez(path, **arrays)  # type: ignore[arg-type]

    with pytest.raises(MnistJaxError, match="not a readable mnist-jax checkpoint"):
        checkpoint.load_params(tmp_path)


def rewrite_central_directory(path: Path, offset: int, value: int) -> None:
    """Sets a 2-byte field at ``offset`` in every central-directory entry."""
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        data[at + offset : at + offset + 2] = value.to_bytes(2, "little")
        at = data.find(b"PK\x01\x02", at + 4)
    path.write_bytes(bytes(data))


# Each of these escaped as a raw exception until fuzzing found it.
@pytest.mark.parametrize(
    "offset, value, escaped",
    [(10, 99, "NotImplementedError"), (8, 1, "RuntimeError")],
    ids=["unknown compression method", "encrypted flag"],
)
def test_a_damaged_zip_directory_is_one_clear_error(tmp_path, offset, value, escaped):
    path = saved(tmp_path)
    rewrite_central_directory(path, offset, value)

    with pytest.raises(MnistJaxError, match=f"truncated or corrupted \\({escaped}"):
        checkpoint.load_params(tmp_path)


def test_a_garbled_array_header_is_one_clear_error(tmp_path):
    # Found by fuzzing: numpy's header parser raised tokenize.TokenError.
    path = saved(tmp_path)
    data = path.read_bytes()
    assert data.count(b"(784, 8)") == 3  # w and Adam's two moments
    path.write_bytes(data.replace(b"(784, 8)", b"(784, 8(", 1))

    with pytest.raises(MnistJaxError, match=r"truncated or corrupted \(TokenError"):
        checkpoint.load_params(tmp_path)


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> tuple[bytes, dict[str, np.ndarray]]:
    """Returns the bytes of a small checkpoint and the arrays in it."""
    path = saved(tmp_path_factory.mktemp("good"))
    return path.read_bytes(), arrays_of(path)


edits = st.tuples(
    st.lists(
        st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)),
        min_size=1,
        max_size=3,
    ),
    st.none() | st.floats(0, 1),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits)
def test_a_damaged_checkpoint_loads_intact_or_raises_the_projects_error(
    good, tmp_path_factory, edits
):
    flips, keep = edits
    data = bytearray(good[0])
    for where, bit in flips:
        data[int(where * len(data))] ^= 1 << bit
    if keep is not None:
        del data[int(keep * len(data)) :]
    path = tmp_path_factory.getbasetemp() / "fuzz" / checkpoint.FILENAME
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(bytes(data))

    try:
        _, arrays = checkpoint.load_meta(path)
    except MnistJaxError as err:
        assert "\n" not in str(err)
        return
    assert sorted(arrays) == sorted(good[1])
    for name, value in arrays.items():
        np.testing.assert_array_equal(value, good[1][name])


WRITER = textwrap.dedent(
    """
    import io, os, sys, time
    import numpy as np
    from mnist_jax import checkpoint
    from mnist_jax.train import TrainConfig, init_state

    folder, hang = sys.argv[1], sys.argv[2] == "hang"
    config = TrainConfig(sizes=(784, 1024, 10), augment=None, epochs=1)
    state = init_state(config, 100)
    checkpoint.save(folder, state, config)
    print("saved 0", flush=True)
    real_savez = np.savez

    def savez_then_hang(f, **arrays):
        buffer = io.BytesIO()
        real_savez(buffer, **arrays)
        f.write(buffer.getvalue()[: buffer.tell() // 2])
        f.flush()
        print("half written", flush=True)
        time.sleep(600)

    if hang:
        np.savez = savez_then_hang
    for step in range(1, 1000):
        checkpoint.save(folder, state._replace(step=state.step + step), config)
        print(f"saved {step}", flush=True)
    """
)


def kill_writer(folder: Path, mode: str, wait_for: str) -> int:
    """Starts WRITER and SIGKILLs it once it printed ``wait_for``.

    Returns the last step it reported saved, counting lines printed between
    ``wait_for`` and the kill.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(folder), mode],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert writer.stdout is not None
    lines = []
    try:
        for line in writer.stdout:
            lines.append(line.strip())
            if lines[-1] == wait_for:
                break
    finally:
        writer.send_signal(signal.SIGKILL)
        lines += writer.stdout.read().split("\n")
        writer.wait(timeout=60)
    assert writer.returncode == -signal.SIGKILL
    assert wait_for in lines, f"the writer stopped early: {lines}"
    return max(int(line.split()[1]) for line in lines if line.startswith("saved"))


@pytest.mark.slow
def test_a_writer_killed_mid_write_leaves_the_previous_checkpoint(tmp_path):
    kill_writer(tmp_path, "hang", "half written")

    stray = list(tmp_path.glob(".checkpoint-*.tmp"))
    assert len(stray) == 1 and stray[0].stat().st_size > 0
    state, _ = checkpoint.load(tmp_path, 100)
    assert int(state.step) == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".npz") == [
        checkpoint.FILENAME
    ]
    # The stray half file is ignored by later saves and loads too.
    saved(tmp_path, state_config(state), step=5)
    assert int(checkpoint.load(tmp_path, 100)[0].step) == 5


def state_config(state) -> TrainConfig:
    sizes = (784, state.params[0]["w"].shape[1], 10)
    return TrainConfig(sizes=sizes, augment=None, epochs=1)


@pytest.mark.slow
def test_a_writer_killed_while_saving_again_and_again_leaves_a_whole_checkpoint(
    tmp_path,
):
    last = kill_writer(tmp_path, "loop", "saved 3")

    state, _ = checkpoint.load(tmp_path, 100)
    assert int(state.step) in (last, last + 1)


def test_the_next_save_clears_a_killed_writers_temporary_file(tmp_path):
    stale = tmp_path / ".checkpoint-killed.tmp"
    stale.write_bytes(b"half a checkpoint")

    path = saved(tmp_path)

    assert not stale.exists()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_checkpoint_gets_the_usual_file_mode(tmp_path):
    umask = os.umask(0o022)
    try:
        path = saved(tmp_path)
    finally:
        os.umask(umask)

    assert path.stat().st_mode & 0o777 == 0o644
