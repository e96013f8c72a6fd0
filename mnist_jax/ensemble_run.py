"""A many-model run on disk: what ``mnist-jax train --seeds K`` writes.

The folder holds:

- ``ensemble.json``: ``{"config", "data", "members"}``, the shared config,
  where the data came from and each model's ``{"model", "seed", "lr"}``;
- ``metrics.jsonl``: one row per model per epoch (``EpochResult.to_dict()``
  with ``model``, ``seed`` and ``initial_lr``);
- ``model-<m>/checkpoint.npz``: model ``m`` as an ordinary single-model
  checkpoint (its config carries its seed and lr), rewritten every epoch, so
  ``mnist-jax evaluate --checkpoint <out>/model-3`` works;
- ``summary.json``: the last epoch's evaluation accuracy of each model and
  their mean, standard deviation, minimum and maximum.

Every model is evaluated on the same split: the dev hold-out is drawn with
the first seed.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnist_jax import checkpoint
from mnist_jax.data import Splits
from mnist_jax.ensemble import (
    Member,
    Spread,
    eval_accuracies,
    fit_many,
    member_config,
    member_state,
)
from mnist_jax.errors import MnistJaxError
from mnist_jax.run import (
    ENSEMBLE_FILE,
    METRICS_FILE,
    SUMMARY_FILE,
    DataSpec,
    clear_run,
    holds_run,
)
from mnist_jax.train import EpochResult, TrainConfig, TrainState


@dataclass
class ManyRunResult:
    """What a many-model run left: stacked states, members, epochs, folder."""

    states: TrainState
    members: list[Member]
    history: list[list[EpochResult]]
    out_dir: Path | None
    splits: Splits | None = field(default=None, repr=False)

    def final_accuracies(self) -> list[float]:
        """Returns each model's evaluation accuracy after the last epoch."""
        return eval_accuracies(self.history[-1]) if self.history else []


def model_dir(out_dir: str | os.PathLike, m: int) -> Path:
    """Returns the folder of model ``m``'s checkpoint."""
    return Path(out_dir) / f"model-{m}"


def _prepare(folder: Path, overwrite: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise MnistJaxError(f"--out {folder} is a file; name a folder for the run")
    if holds_run(folder) and not overwrite:
        raise MnistJaxError(
            f"{folder} already holds a run; pass --overwrite to replace it"
        )
    folder.mkdir(parents=True, exist_ok=True)
    clear_run(folder)  # also a crashed run's config.json, or a single run's files


def read_eval_data(folder: Path) -> tuple[DataSpec, int]:
    """Returns the data of the many-model run in ``folder`` and its split seed.

    Every model was evaluated on the split held out with the first model's
    seed (see ``train_many_run``).
    """
    path = Path(folder) / ENSEMBLE_FILE
    try:
        saved = json.loads(path.read_text())
        return DataSpec(**saved["data"]), int(saved["members"][0]["seed"])
    except (ValueError, KeyError, TypeError, IndexError) as err:
        raise MnistJaxError(
            f"{path}: not a readable many-model record ({err})"
        ) from None


def summary(members: Sequence[Member], results: Sequence[EpochResult]) -> dict:
    """Returns the JSON-ready accuracies of one epoch and their spread."""
    accuracies = eval_accuracies(results)
    return {
        "eval_accuracy": dataclasses.asdict(Spread.of(accuracies)),
        "models": [
            {"model": m, "seed": member.seed, "lr": member.lr, "eval_accuracy": acc}
            for m, (member, acc) in enumerate(zip(members, accuracies, strict=True))
        ],
    }


def train_many_run(
    config: TrainConfig,
    members: Sequence[Member],
    data: DataSpec | None = None,
    *,
    out_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    splits: Splits | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    on_epoch: Callable[[list[EpochResult], TrainState], None] | None = None,
) -> ManyRunResult:
    """Trains ``members`` together, writing the folder above every epoch."""
    folder = Path(out_dir) if out_dir is not None else None
    data = data or DataSpec()
    members = list(members)
    if folder is not None:
        _prepare(folder, overwrite)
        record: dict[str, Any] = {
            "config": config.to_dict(),
            "data": data.__dict__,
            "members": [
                {"model": m, "seed": s, "lr": lr} for m, (s, lr) in enumerate(members)
            ],
        }
        (folder / ENSEMBLE_FILE).write_text(json.dumps(record, indent=2) + "\n")
    splits = splits or data.load(members[0].seed)

    def after_epoch(results: list[EpochResult], states: TrainState) -> None:
        if folder is not None:
            for m, member in enumerate(members):
                checkpoint.save(
                    model_dir(folder, m),
                    member_state(states, m),
                    member_config(config, member),
                )
            with open(folder / METRICS_FILE, "a") as f:
                for result in results:
                    f.write(json.dumps(result.to_dict()) + "\n")
            text = json.dumps(summary(members, results), indent=2) + "\n"
            (folder / SUMMARY_FILE).write_text(text)
        if on_epoch is not None:
            on_epoch(results, states)

    states, history = fit_many(
        splits.train.images,
        splits.train.labels,
        splits.eval.images,
        splits.eval.labels,
        config,
        members,
        on_progress=on_progress,
        on_epoch=after_epoch,
    )
    return ManyRunResult(states, members, history, folder, splits)
