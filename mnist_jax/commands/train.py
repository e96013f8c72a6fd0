"""``mnist-jax train``: train the MLP and write a run folder."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from mnist_jax import model
from mnist_jax.commands import layer_sizes
from mnist_jax.commands.augment_flags import add_augment_args
from mnist_jax.commands.augment_flags import (
    config_from_args as augment_config_from_args,
)
from mnist_jax.commands.scale_flags import (
    add_scale_args,
    join_processes,
    members_from_args,
)
from mnist_jax.errors import MnistJaxError
from mnist_jax.run import DataSpec, RunResult, read_run_config, train_run
from mnist_jax.schedules import SCHEDULES
from mnist_jax.signals import stop_requested
from mnist_jax.train import EpochResult, TrainConfig, steps_per_epoch

DEFAULTS = TrainConfig()
# The shell's status for a run stopped by Ctrl-C (128 + SIGINT), for SIGTERM too.
INTERRUPTED = 130


def add_data_args(parser: argparse.ArgumentParser) -> None:
    """Adds --data and --cache-dir, shared by the commands that read data."""
    parser.add_argument(
        "--data",
        default="sample",
        help="'sample' (5,000 offline digits), 'mnist', 'fashion-mnist', a folder "
        "of IDX files or a Kaggle CSV (default: %(default)s)",
    )
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="where 'mnist' and 'fashion-mnist' are cached "
        "(default: $MNIST_JAX_CACHE or the user cache folder)",
    )


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train the MLP",
        description="Train the MLP with Adam and write config, metrics and a "
        "checkpoint to --out. Ctrl-C or SIGTERM lets the current chunk of steps "
        "finish (see --chunk-steps), writes a checkpoint, says where, and exits "
        "with status 130; --resume then continues exactly where it stopped.",
    )
    add_data_args(p)
    p.add_argument(
        "--eval-data",
        default=None,
        help="evaluate on this data "
        "instead of the official test split or a dev hold-out",
    )
    p.add_argument(
        "--dev-size",
        type=int,
        default=1000,
        help="examples held out "
        "for evaluation when the data has no test split (%(default)s)",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help=f"passes over the training set ({DEFAULTS.epochs})",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULTS.batch_size,
        help="mini-batch size (%(default)s)",
    )
    p.add_argument(
        "--lr",
        type=float,
        default=DEFAULTS.lr,
        help="initial learning rate (%(default)s)",
    )
    p.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default=DEFAULTS.schedule,
        help="learning-rate schedule (%(default)s)",
    )
    p.add_argument(
        "--decay-rate",
        type=float,
        default=DEFAULTS.decay_rate,
        help="decay rate of inverse-time and exponential (%(default)s)",
    )
    p.add_argument(
        "--decay-steps",
        type=int,
        default=DEFAULTS.decay_steps,
        help="steps between decays; 0 means once per epoch (%(default)s)",
    )
    p.add_argument(
        "--keep-prob",
        type=float,
        default=DEFAULTS.keep_prob,
        help="dropout keep probability on hidden layers (%(default)s)",
    )
    p.add_argument(
        "--sizes",
        type=layer_sizes,
        default=DEFAULTS.sizes,
        help="layer sizes, input to output (784,100,50,20,10)",
    )
    p.add_argument(
        "--init",
        choices=model.INITS,
        default=DEFAULTS.init,
        help="weight initialisation (%(default)s)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=DEFAULTS.seed,
        help="seed of every random choice (%(default)s)",
    )
    p.add_argument(
        "--out",
        default=None,
        help="run folder for config.json, metrics.jsonl, checkpoint.npz",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out with its saved data and settings; "
        "other training flags are ignored, --epochs may extend the run",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace the run already in --out"
    )
    add_augment_args(p)
    add_scale_args(p)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "--plot",
        action="store_true",
        help="at the end, write curves, predictions, misclassified and confusion "
        "PNGs into --out (needs matplotlib)",
    )
    p.add_argument(
        "--chunk-steps",
        type=int,
        default=DEFAULTS.chunk_steps,
        help="steps per compiled chunk; progress, Ctrl-C and divergence checks "
        "act between chunks (%(default)s)",
    )
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Returns the TrainConfig that the flags describe."""
    augment = augment_config_from_args(args)
    return TrainConfig(
        sizes=args.sizes,
        init=args.init,
        epochs=DEFAULTS.epochs if args.epochs is None else args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        schedule=args.schedule,
        decay_rate=args.decay_rate,
        decay_steps=args.decay_steps,
        keep_prob=args.keep_prob,
        seed=args.seed,
        augment=None if augment is None else dataclasses.asdict(augment),
        chunk_steps=args.chunk_steps,
    )


def format_epoch(result: EpochResult, epochs: int) -> str:
    """Returns the one-line summary printed after each epoch."""
    return (
        f"epoch {result.epoch:>3}/{epochs}  loss {result.train_loss:.4f}  "
        f"train {result.train_accuracy:.4f}  eval {result.eval_accuracy:.4f}  "
        f"lr {result.lr:.3g}  {result.seconds:.1f}s"
    )


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    join_processes(args)  # before anything else uses JAX
    if args.out is not None and not args.out.strip():
        raise MnistJaxError("--out is empty; name a folder for the run")
    if args.plot:
        _check_can_plot(args.out)
    config = config_from_args(args)
    members = members_from_args(args, config.lr)
    if members is not None:
        from mnist_jax.commands.train_many import run_many

        return run_many(args, config, members)
    from mnist_jax.parallel import is_primary

    primary = is_primary()  # in a multi-process run only process 0 prints
    data = DataSpec(args.data, args.dev_size, args.eval_data, args.cache_dir)
    if args.resume and args.out is not None:
        saved, _ = read_run_config(args.out)
        config = TrainConfig.from_dict(
            {**saved.to_dict(), "epochs": args.epochs or saved.epochs}
        )
    bar = None
    total_epochs = [config.epochs]

    def on_progress(done: int, total: int) -> None:
        nonlocal bar
        if args.no_progress or not primary:
            return
        if bar is None:
            bar = tqdm(
                total=total, unit="step", leave=False, file=sys.stderr, disable=None
            )
        bar.update(done - bar.n)

    def on_epoch(result: EpochResult, _state) -> None:
        nonlocal bar
        if bar is not None:
            bar.close()
            bar = None
        if primary:
            print(format_epoch(result, total_epochs[0]), flush=True)

    with stop_requested(flag=getattr(args, "interrupted", None)) as stop:
        result = train_run(
            config,
            None if args.resume else data,
            out_dir=args.out,
            resume=args.resume,
            overwrite=args.overwrite,
            epochs=args.epochs if args.resume else None,
            on_progress=on_progress,
            on_epoch=on_epoch,
            should_stop=stop,
        )
    if bar is not None:
        bar.close()
    if result.interrupted:
        if primary:
            print(_interrupted_message(result, stop.name or "a stop"), file=sys.stderr)
        return INTERRUPTED
    if not primary:
        return 0
    if result.history:
        last = result.history[-1]
        name = result.splits.eval_name if result.splits else "eval"
        print(f"final {name} accuracy {last.eval_accuracy:.4f}")
    if result.checkpoint is not None:
        print(f"checkpoint written to {result.checkpoint}")
    if args.plot and result.out_dir is not None:
        from mnist_jax.plots import plot_run

        params = result.state.params
        paths = plot_run(result.out_dir, params=params, splits=result.splits)
        print(f"plots written to {result.out_dir}: {', '.join(p.name for p in paths)}")
    return 0


def _check_can_plot(out: str | None) -> None:
    """Fails before training, not after it, when --plot could not work."""
    from mnist_jax.plots import require_matplotlib

    if out is None:
        raise MnistJaxError("--plot writes into the run folder; give --out too")
    require_matplotlib()


def _interrupted_message(result: RunResult, signal_name: str) -> str:
    """Returns what an interrupted run tells the user: where it stopped and saved."""
    step = int(result.state.step)
    total = result.config.epochs
    if result.splits is not None:
        per_epoch = steps_per_epoch(len(result.splits.train), result.config.batch_size)
        total *= per_epoch
        where = f"in epoch {step // per_epoch + 1} at step {step} of {total}"
    else:
        where = f"at step {step}"
    stopped = f"mnist-jax train: {signal_name} stopped the run {where}"
    if result.checkpoint is None:
        return f"{stopped}; nothing was saved (no --out)"
    return (
        f"{stopped}; checkpoint written to {result.checkpoint}; continue with "
        f"mnist-jax train --out {result.out_dir} --resume"
    )
