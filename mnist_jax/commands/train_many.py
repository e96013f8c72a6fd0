"""``mnist-jax train --seeds K [--lrs ...]``: many models, one line per epoch.

Not a subcommand: ``train`` hands over here when ``--seeds`` or ``--lrs``
is given.
"""

from __future__ import annotations

import argparse
import sys

from mnist_jax.ensemble import Member, Spread, eval_accuracies
from mnist_jax.ensemble_run import train_many_run
from mnist_jax.run import DataSpec
from mnist_jax.train import EpochResult, TrainConfig


def format_many_epoch(results: list[EpochResult], epochs: int) -> str:
    """Returns the one-line summary of an epoch of every model."""
    loss = Spread.of([r.train_loss for r in results])
    first = results[0]
    return (
        f"epoch {first.epoch:>3}/{epochs}  {_models(len(results))}  "
        f"loss {loss.mean:.4f} ± {loss.std:.4f}  "
        f"eval {Spread.of(eval_accuracies(results))}  {first.seconds:.1f}s"
    )


def format_models(members: list[Member], results: list[EpochResult]) -> str:
    """Returns one line per model (seed, initial lr, accuracy) and the spread."""
    lines = [
        f"model {m:>2}  seed {member.seed:>3}  lr {member.lr:<8.3g}  "
        f"eval {result.eval_accuracy:.4f}"
        for m, (member, result) in enumerate(zip(members, results, strict=True))
    ]
    accuracies = Spread.of(eval_accuracies(results))
    lines.append(f"eval accuracy of {_models(len(results))}: {accuracies}")
    return "\n".join(lines)


def run_many(
    args: argparse.Namespace, config: TrainConfig, members: list[Member]
) -> int:
    """Trains ``members`` as the flags say; returns the exit status."""
    from tqdm import tqdm

    data = DataSpec(args.data, args.dev_size, args.eval_data, args.cache_dir)
    bar = None

    def on_progress(done: int, total: int) -> None:
        nonlocal bar
        if args.no_progress:
            return
        if bar is None:
            bar = tqdm(
                total=total, unit="step", leave=False, file=sys.stderr, disable=None
            )
        bar.update(done - bar.n)

    def on_epoch(results: list[EpochResult], _states) -> None:
        nonlocal bar
        if bar is not None:
            bar.close()
            bar = None
        print(format_many_epoch(results, config.epochs), flush=True)

    result = train_many_run(
        config,
        members,
        data,
        out_dir=args.out,
        overwrite=args.overwrite,
        on_progress=on_progress,
        on_epoch=on_epoch,
    )
    if bar is not None:
        bar.close()
    if result.history:
        print(format_models(result.members, result.history[-1]))
    if result.out_dir is not None:
        print(f"checkpoints written to {result.out_dir}/model-*")
    return 0


def _models(n: int) -> str:
    return f"{n} model" if n == 1 else f"{n} models"
