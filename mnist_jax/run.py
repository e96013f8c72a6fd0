"""A training run on disk: its folder, config.json, metrics.jsonl, checkpoint.

``train_run`` is what ``mnist-jax train`` calls and what a research script
calls to get the same folder. The folder holds:

- ``config.json``: ``{"config": TrainConfig.to_dict(), "data": {...}}``;
- ``metrics.jsonl``: one JSON object per epoch (``EpochResult.to_dict()``);
- ``checkpoint.npz``: see ``mnist_jax.checkpoint``, rewritten every epoch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnist_jax import checkpoint
from mnist_jax.data import NAMED, SAMPLE, Splits, load_splits
from mnist_jax.errors import MnistJaxError
from mnist_jax.parallel import is_primary
from mnist_jax.train import (
    Diverged,
    EpochResult,
    TrainConfig,
    TrainState,
    fit,
    steps_per_epoch,
)

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
ENSEMBLE_FILE = "ensemble.json"  # a many-model run (ensemble_run.py)
SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class DataSpec:
    """Where a run's data comes from; saved so that ``--resume`` needs no flags."""

    data: str = "sample"
    dev_size: int = 1000
    eval_data: str | None = None
    cache_dir: str | None = None

    def absolute(self) -> DataSpec:
        """Returns the spec with file and folder paths made absolute.

        Saved that way, ``plot`` and ``--resume`` work from any directory.
        Names (``sample``, ``mnist``, ``fashion-mnist``) stay names.
        """

        def fix(spec: str | None) -> str | None:
            if spec is None or spec in (SAMPLE, *NAMED) or not Path(spec).exists():
                return spec
            return str(Path(spec).resolve())

        return DataSpec(
            fix(self.data) or self.data,
            self.dev_size,
            fix(self.eval_data),
            fix(self.cache_dir),
        )

    def load(self, seed: int) -> Splits:
        """Returns the train and evaluation splits (dev split seeded by ``seed``)."""
        return load_splits(
            self.data,
            dev_size=self.dev_size,
            seed=seed,
            eval_spec=self.eval_data,
            cache_dir=self.cache_dir,
        )


@dataclass
class RunResult:
    """What a run left: its final state, the epochs it ran, where it wrote."""

    state: TrainState
    config: TrainConfig
    history: list[EpochResult]
    out_dir: Path | None
    checkpoint: Path | None = None
    interrupted: bool = False
    splits: Splits | None = field(default=None, repr=False)


def read_run_config(out_dir: str | os.PathLike) -> tuple[TrainConfig, DataSpec]:
    """Returns the config and data spec saved in a run folder."""
    path = Path(out_dir) / CONFIG_FILE
    if not path.exists() and (Path(out_dir) / ENSEMBLE_FILE).exists():
        raise MnistJaxError(
            f"{out_dir} holds a many-model run ({ENSEMBLE_FILE}); --resume and "
            "plot work on single runs, and each model-<m> folder is one"
        )
    try:
        saved = json.loads(path.read_text())
        return TrainConfig.from_dict(saved["config"]), DataSpec(**saved["data"])
    except FileNotFoundError:
        raise MnistJaxError(f"{path}: missing; is {out_dir} a run folder?") from None
    except (ValueError, KeyError, TypeError) as err:
        raise MnistJaxError(f"{path}: not a readable run config ({err})") from None


def holds_run(folder: Path) -> bool:
    """Says whether ``folder`` holds a finished epoch of a single or many-model run.

    A folder with only ``config.json`` never finished an epoch (a crash or a
    bad flag): nothing is lost by training into it again.
    """
    return (folder / checkpoint.FILENAME).exists() or (folder / ENSEMBLE_FILE).exists()


def clear_run(folder: Path) -> None:
    """Removes the files a single or many-model run writes, and nothing else."""
    from mnist_jax.plots import FILES as FIGURES  # plots imports this module

    names = (CONFIG_FILE, METRICS_FILE, checkpoint.FILENAME, ENSEMBLE_FILE)
    for name in (*names, SUMMARY_FILE, *FIGURES):
        (folder / name).unlink(missing_ok=True)
    for model in folder.glob("model-*"):
        if model.is_dir() and model.name[len("model-") :].isdigit():
            (model / checkpoint.FILENAME).unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # the user's own files stay
                model.rmdir()


def _check_more_to_do(
    folder: Path, step: int, config: TrainConfig, n_train: int
) -> None:
    """Raises unless a resumed run has steps left (before config.json changes)."""
    per_epoch = steps_per_epoch(n_train, config.batch_size)
    if step < config.epochs * per_epoch:
        return
    done = step / per_epoch
    ran = f"{done:g}" if done == int(done) else f"{done:.2f}"
    raise MnistJaxError(
        f"{folder} has already trained {ran} epoch{'' if ran == '1' else 's'} "
        f"(step {step}); "
        f"pass --epochs with more than {ran} to extend it"
    )


def _prepare_folder(out_dir: Path, resume: bool, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise MnistJaxError(f"--out {out_dir} is a file; name a folder for the run")
    if resume and overwrite:
        raise MnistJaxError(
            "--resume continues the run in --out and --overwrite replaces it; "
            "pass one of them"
        )
    if holds_run(out_dir) and not (resume or overwrite):
        raise MnistJaxError(
            f"{out_dir} already holds a run; pass --resume to continue it or "
            "--overwrite to replace it"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    if overwrite:
        clear_run(out_dir)


def train_run(
    config: TrainConfig,
    data: DataSpec | None = None,
    *,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
    epochs: int | None = None,
    splits: Splits | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    on_epoch: Callable[[EpochResult, TrainState], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RunResult:
    """Trains, writing config, metrics and a checkpoint every epoch to ``out_dir``.

    resume: continue the run in ``out_dir`` with its saved config and data;
    ``epochs`` may extend it. splits: data already loaded (skips ``data``).
    A non-finite loss raises ``Diverged``, whose message says where the last
    good checkpoint is; that checkpoint is left as it was. When
    ``should_stop()`` turns true the state is checkpointed, mid-epoch if need
    be, and the result says ``interrupted``; ``resume`` then continues it. In a
    multi-process run every process reads ``out_dir``; only process 0 writes.
    """
    folder = Path(out_dir) if out_dir is not None else None
    writer = folder if is_primary() else None
    state = None
    if resume:
        if folder is None:
            raise MnistJaxError("--resume needs --out, the run folder to continue")
        config, data = read_run_config(folder)
    data = (data or DataSpec()).absolute()
    if epochs is not None:
        config = TrainConfig.from_dict({**config.to_dict(), "epochs": epochs})
    if writer is not None:
        _prepare_folder(writer, resume, overwrite)
    splits = splits or data.load(config.seed)
    n_train = splits.train.images.shape[0]
    if resume and folder is not None:
        state, _ = checkpoint.load(folder, n_train, config)
        _check_more_to_do(folder, int(state.step), config, n_train)
    if writer is not None:
        record = {"config": config.to_dict(), "data": data.__dict__}
        (writer / CONFIG_FILE).write_text(json.dumps(record, indent=2) + "\n")

    per_epoch = steps_per_epoch(n_train, config.batch_size)
    saved_at = None if state is None else _position(int(state.step), per_epoch)
    saved_step = None if state is None else int(state.step)

    def after_epoch(result: EpochResult, epoch_state: TrainState) -> None:
        nonlocal saved_at, saved_step
        if writer is not None:
            checkpoint.save(writer, epoch_state, config)
            saved_at = _position(result.step, per_epoch)
            saved_step = result.step
            with open(writer / METRICS_FILE, "a") as f:
                f.write(json.dumps(result.to_dict()) + "\n")
        if on_epoch is not None:
            on_epoch(result, epoch_state)

    try:
        state, history = fit(
            splits.train.images,
            splits.train.labels,
            splits.eval.images,
            splits.eval.labels,
            config,
            state=state,
            on_progress=on_progress,
            on_epoch=after_epoch,
            should_stop=should_stop,
        )
    except Diverged as err:
        # Nothing is saved past this point, so the last good checkpoint stays.
        raise Diverged(f"{err}; {_kept(folder, saved_at)}") from None
    interrupted = int(state.step) < config.epochs * per_epoch
    saved = None
    if writer is not None:
        # The last epoch's checkpoint already holds this state unless the run
        # stopped mid-epoch or ran no epoch at all.
        if saved_step != int(state.step):
            checkpoint.save(writer, state, config)
        saved = checkpoint.checkpoint_path(writer)
    return RunResult(state, config, history, folder, saved, interrupted, splits)


def _position(step: int, per_epoch: int) -> str:
    """Names a step, e.g. ``"step 20, end of epoch 2"`` or ``"step 23, in epoch 3"``."""
    epoch, done = divmod(step, per_epoch)
    if step == 0:
        return "step 0, before training"
    return f"step {step}, " + (
        f"end of epoch {epoch}" if done == 0 else f"in epoch {epoch + 1}"
    )


def _kept(folder: Path | None, saved_at: str | None) -> str:
    """Says which checkpoint a diverged run leaves behind."""
    if folder is None or saved_at is None:
        return "no checkpoint was written"
    return f"the last good checkpoint ({saved_at}) is kept in {folder}"


def read_metrics(out_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Returns the rows of a run's metrics.jsonl, one dict per epoch."""
    path = Path(out_dir) / METRICS_FILE
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise MnistJaxError(f"{path}: missing; is {out_dir} a run folder?") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError:
            raise MnistJaxError(
                f"{path}: line {number} is not JSON; remove it or train again"
            ) from None
    return rows
