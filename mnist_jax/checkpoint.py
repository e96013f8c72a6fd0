"""Checkpoints: one ``.npz`` file that plain NumPy reads, written atomically.

Format (``FORMAT``, version 1). ``np.load(path, allow_pickle=False)`` gives:

- ``meta``: a 0-d unicode array holding JSON: ``{"format", "version",
  "config", "step"}``, where ``config`` is ``TrainConfig.to_dict()``;
- ``params/<i>/w`` ``(n_{i}, n_{i+1})`` and ``params/<i>/b`` ``(n_{i+1},)``;
- ``opt_state/<path>``: each leaf of the Optax state, named by its pytree
  path (Adam's ``mu`` and ``nu`` mirror the parameters; ``count`` is the
  step count that drives the schedule);
- ``step`` (int32), ``key`` (uint32 key data of the run's PRNG key) and
  ``stats`` (float32 ``[loss_sum, correct, count]`` of the epoch so far).

A write goes to a temporary file in the same folder, is flushed to disk and
then renamed over the old file, so a crash leaves the previous checkpoint.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import tokenize
import zipfile
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from mnist_jax import model
from mnist_jax.errors import MnistJaxError
from mnist_jax.train import TrainConfig, TrainState, init_state

FORMAT = "mnist-jax-checkpoint"
VERSION = 1
FILENAME = "checkpoint.npz"


def _leaf_name(path) -> str:
    return jax.tree_util.keystr(path, simple=True, separator="/")


def _opt_leaves(opt_state) -> dict[str, np.ndarray]:
    flat, _ = jax.tree_util.tree_flatten_with_path(opt_state)
    return {f"opt_state/{_leaf_name(p)}": np.asarray(v) for p, v in flat}


def checkpoint_path(path: str | os.PathLike) -> Path:
    """Returns the checkpoint file for a run folder or a file path."""
    path = Path(path)
    return path / FILENAME if path.is_dir() or path.suffix != ".npz" else path


def save(path: str | os.PathLike, state: TrainState, config: TrainConfig) -> Path:
    """Writes ``state`` and ``config`` atomically; returns the file written.

    path: a run folder (the file is ``<path>/checkpoint.npz``) or a file.
    """
    target = checkpoint_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "config": config.to_dict(),
        "step": int(state.step),
    }
    arrays: dict[str, np.ndarray] = {"meta": np.array(json.dumps(meta))}
    for i, layer in enumerate(state.params):
        arrays[f"params/{i}/w"] = np.asarray(layer["w"])
        arrays[f"params/{i}/b"] = np.asarray(layer["b"])
    arrays.update(_opt_leaves(state.opt_state))
    arrays["step"] = np.asarray(state.step, np.int32)
    arrays["key"] = np.asarray(jax.random.key_data(state.key))
    arrays["stats"] = np.asarray(state.stats, np.float32)

    # A writer killed mid-write leaves its temporary file; the next save of
    # the run (there is one writer per run folder) clears it away.
    for stale in target.parent.glob(".checkpoint-*.tmp"):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint-", suffix=".tmp", dir=target.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)
    return target


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# What np.load can raise on a damaged archive or .npy member: zipfile's own
# errors, an unknown compression method or encryption flag (NotImplementedError,
# RuntimeError), a garbled .npy header (SyntaxError, TokenError), a garbled
# shape (MemoryError, OverflowError), a short or garbled member (the rest).
_DAMAGE = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    OSError,
    ValueError,
    KeyError,
    NotImplementedError,
    RuntimeError,
    SyntaxError,
    tokenize.TokenError,
    struct.error,
    zlib.error,
    MemoryError,
    OverflowError,
)
_ZIP_MAGIC = b"PK\x03\x04"


def _read(target: Path) -> dict[str, np.ndarray]:
    """Returns every array of the archive; nothing is ever unpickled."""
    if not target.is_file():
        raise MnistJaxError(
            f"{target}: no checkpoint there; pass the --out folder of a run"
        )
    with open(target, "rb") as f:
        head = f.read(len(_ZIP_MAGIC))
    if head != _ZIP_MAGIC:
        what = "is empty" if not head else "is not an .npz archive"
        raise MnistJaxError(
            f"{target}: the checkpoint {what}; it is truncated or corrupted, so "
            "resume from an intact copy or train again"
        )
    try:
        with np.load(target, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except _DAMAGE as err:
        if isinstance(err, ValueError) and "Object arrays" in str(err):
            raise MnistJaxError(
                f"{target}: the checkpoint holds an object array, which only "
                "pickle could load; mnist-jax never unpickles files, so it "
                "refuses this one"
            ) from None
        raise MnistJaxError(
            f"{target}: the checkpoint is truncated or corrupted "
            f"({type(err).__name__}: {err}); resume from an intact copy or "
            "train again"
        ) from None


def load_meta(path: str | os.PathLike) -> tuple[TrainConfig, dict[str, np.ndarray]]:
    """Returns the saved config and the raw arrays of a checkpoint."""
    target = checkpoint_path(path)
    arrays = _read(target)
    try:
        meta = json.loads(str(arrays["meta"]))
        if meta.get("format") != FORMAT:
            raise ValueError(f"format is {meta.get('format')!r}")
        if meta.get("version") != VERSION:
            raise ValueError(f"version {meta.get('version')} is not {VERSION}")
        config = TrainConfig.from_dict(meta["config"])
    except (KeyError, ValueError, TypeError, MnistJaxError) as err:
        raise MnistJaxError(
            f"{target}: not a readable mnist-jax checkpoint ({err})"
        ) from None
    return config, arrays


def load(
    path: str | os.PathLike, n_train: int, config: TrainConfig | None = None
) -> tuple[TrainState, TrainConfig]:
    """Returns the saved state and its config.

    n_train: the training-set size, which fixes the schedule's steps per
    epoch. config: the config the state must fit (e.g. a resumed run's);
    its layer sizes are checked against the saved ones. Defaults to the
    saved config.
    """
    target = checkpoint_path(path)
    saved, arrays = load_meta(target)
    config = saved if config is None else config
    if tuple(saved.sizes) != tuple(config.sizes):
        raise MnistJaxError(
            f"{target}: the checkpoint is for layer sizes {list(saved.sizes)}, "
            f"not {list(config.sizes)}"
        )
    template = init_state(config, n_train)
    try:
        params = [
            {
                "w": _param(
                    arrays[f"params/{i}/w"], layer["w"].shape, f"params/{i}/w"
                ).astype(layer["w"].dtype),
                "b": _param(
                    arrays[f"params/{i}/b"], layer["b"].shape, f"params/{i}/b"
                ).astype(layer["b"].dtype),
            }
            for i, layer in enumerate(template.params)
        ]
        flat, treedef = jax.tree_util.tree_flatten_with_path(template.opt_state)
        opt_leaves = [
            _like(arrays[f"opt_state/{_leaf_name(p)}"], v, _leaf_name(p))
            for p, v in flat
        ]
        state = TrainState(
            params=params,
            opt_state=jax.tree_util.tree_unflatten(treedef, opt_leaves),
            step=_like(arrays["step"], template.step, "step"),
            key=jax.random.wrap_key_data(
                _like(arrays["key"], jax.random.key_data(template.key), "key")
            ),
            stats=_like(arrays["stats"], template.stats, "stats"),
        )
    except KeyError as err:
        raise MnistJaxError(
            f"{target}: the checkpoint lacks the array {err}; it is from a "
            "different architecture or version"
        ) from None
    return state, config


def _checked(value: np.ndarray, shape: tuple[int, ...], name: str) -> jax.Array:
    """Returns ``value`` on the device once its shape and number type are right."""
    if value.shape != tuple(shape):
        raise MnistJaxError(
            f"checkpoint array {name} has shape {value.shape}, expected "
            f"{tuple(shape)}: the checkpoint is from a different architecture"
        )
    if value.dtype.kind not in "biuf":
        raise MnistJaxError(
            f"checkpoint array {name} holds {value.dtype} values, not numbers; "
            "the checkpoint is corrupted"
        )
    return jnp.asarray(value)


def _param(value: np.ndarray, shape: tuple[int, ...], name: str) -> jax.Array:
    """Returns a weight or bias once it has the shape, floats and finite values.

    Training saves no state after a non-finite loss, so NaN or infinite
    parameters mean the file was changed after it was written.
    """
    if value.dtype.kind != "f":
        raise MnistJaxError(
            f"checkpoint array {name} holds {value.dtype} values, not floats; "
            "the checkpoint is corrupted"
        )
    checked = _checked(value, shape, name)
    if not np.isfinite(value).all():
        raise MnistJaxError(
            f"checkpoint array {name} holds NaN or infinite values; "
            "the checkpoint is corrupted"
        )
    return checked


def _like(value: np.ndarray, template, name: str) -> jax.Array:
    """Returns ``value`` shaped and typed like ``template``, or raises why not."""
    return _checked(value, template.shape, name).astype(template.dtype)


def load_params(path: str | os.PathLike) -> tuple[model.Params, TrainConfig]:
    """Returns only the parameters and config, e.g. for evaluate and predict.

    The weights keep the dtype they were saved with; their shapes must be
    the ones the saved layer sizes give.
    """
    target = checkpoint_path(path)
    config, arrays = load_meta(target)
    pairs = zip(config.sizes[:-1], config.sizes[1:], strict=True)
    try:
        params = [
            {
                "w": _param(arrays[f"params/{i}/w"], (n_in, n_out), f"params/{i}/w"),
                "b": _param(arrays[f"params/{i}/b"], (n_out,), f"params/{i}/b"),
            }
            for i, (n_in, n_out) in enumerate(pairs)
        ]
    except KeyError as err:
        raise MnistJaxError(f"{target}: the checkpoint lacks the array {err}") from None
    return params, config
