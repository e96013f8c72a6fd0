"""Pictures of a run: learning curves, predictions, mistakes and confusion.

Each figure is a ``matplotlib.figure.Figure`` on the Agg canvas, never
pyplot, so it needs no display and leaves no global state behind.
matplotlib (the ``plot`` extra) is imported only when a figure is drawn.
``plot_run`` writes the four PNGs of a run folder:

- ``curves.png``: training loss, train and eval accuracy and the learning
  rate per epoch, from metrics.jsonl;
- ``predictions.png``: the first evaluation digits, each titled with the
  predicted class, its softmax probability and the true class (red when
  wrong);
- ``misclassified.png``: the wrong predictions, most confident first;
- ``confusion.png``: the confusion matrix, rows true and columns predicted,
  coloured by the fraction of the true class on a log scale.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from mnist_jax import checkpoint, model
from mnist_jax.data import Splits
from mnist_jax.errors import MnistJaxError
from mnist_jax.evaluate import confusion_matrix
from mnist_jax.run import METRICS_FILE, read_metrics, read_run_config
from mnist_jax.train import predict

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FILES = ("curves.png", "predictions.png", "misclassified.png", "confusion.png")
RIGHT, WRONG = "tab:green", "tab:red"


def require_matplotlib() -> None:
    """Raises ``MnistJaxError`` with the install command when matplotlib is absent."""
    try:
        import matplotlib.backends.backend_agg  # noqa: F401
        import matplotlib.figure  # noqa: F401
    except ImportError:
        raise MnistJaxError(
            'plots need matplotlib; install it with pip install "mnist-jax[plot]"'
        ) from None


def new_figure(width: float, height: float) -> Figure:
    """Returns an empty figure of ``width`` x ``height`` inches on an Agg canvas."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: str | os.PathLike) -> Path:
    """Writes ``fig`` as a PNG; returns the path."""
    path = Path(path)
    try:
        fig.savefig(path, dpi=100)
    except OSError as err:
        raise MnistJaxError(f"cannot write {path}: {err.strerror or err}") from None
    return path


def curves_figure(rows: Sequence[dict[str, Any]], eval_name: str = "eval") -> Figure:
    """Returns loss, accuracies and learning rate against the epoch.

    rows: metrics.jsonl rows, each with ``epoch``, ``train_loss``,
    ``train_accuracy``, ``eval_accuracy`` and ``lr``.
    """
    fig = new_figure(12, 3.6)
    loss_ax, acc_ax, lr_ax = fig.subplots(1, 3)
    if not rows:
        fig.suptitle("no finished epoch yet")
    epochs = [row["epoch"] for row in rows]

    def column(name: str) -> list[float]:
        return [row[name] for row in rows]

    loss_ax.plot(epochs, column("train_loss"), "o-", ms=3)
    loss_ax.set(title="training loss", xlabel="epoch", ylabel="cross-entropy")
    acc_ax.plot(epochs, column("train_accuracy"), "o-", ms=3, label="train")
    acc_ax.plot(epochs, column("eval_accuracy"), "o-", ms=3, label=eval_name)
    acc_ax.set(title="accuracy", xlabel="epoch")
    acc_ax.legend(loc="lower right")
    lr_ax.plot(epochs, column("lr"), "o-", ms=3, color="tab:purple")
    lr_ax.set(title="learning rate (last step)", xlabel="epoch")
    if rows:
        lr_ax.set_yscale("log")
        acc_ax.annotate(
            f"{eval_name} {rows[-1]['eval_accuracy']:.4f}",
            (epochs[-1], rows[-1]["eval_accuracy"]),
            textcoords="offset points",
            xytext=(0, -18),
            ha="right",
            fontsize=8,
        )
    for ax in (loss_ax, acc_ax, lr_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    return fig


def digits_figure(
    images: np.ndarray,
    labels: np.ndarray,
    predicted: np.ndarray,
    confidence: np.ndarray,
    title: str,
    columns: int = 10,
) -> Figure:
    """Returns a grid of digits, each titled ``predicted (probability) / true``.

    images: ``(n, 784)`` uint8; labels, predicted: ``(n,)`` classes;
    confidence: ``(n,)`` the softmax probability of the predicted class.
    A title is green when the prediction is right and red when it is wrong.
    """
    n = len(images)
    rows = max(1, -(-n // columns))
    fig = new_figure(1.0 * columns, 1.15 * rows + 0.4)
    fig.suptitle(title)
    axes = fig.subplots(rows, columns, squeeze=False)
    if n == 0:
        fig.text(0.5, 0.4, "none", ha="center", fontsize=14)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= n:
            continue
        ax.imshow(images[i].reshape(28, 28), cmap="gray", vmin=0, vmax=255)
        p, y = int(predicted[i]), int(labels[i])
        ax.set_title(
            f"{p} ({confidence[i]:.0%})\ntrue {y}",
            fontsize=8,
            color=RIGHT if p == y else WRONG,
        )
    return fig


def confusion_figure(confusion: np.ndarray, title: str) -> Figure:
    """Returns the confusion matrix ``(k, k)``, rows true and columns predicted.

    Cells are coloured by the fraction of their true class on a log scale
    from 0.1 % to 100 %, so the few mistakes show beside the large diagonal;
    empty cells stay white. Every nonzero count is written in its cell.
    """
    from matplotlib.colors import LogNorm

    k = confusion.shape[0]
    totals = confusion.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(confusion > 0, confusion / np.maximum(totals, 1), np.nan)
    fig = new_figure(7, 6)
    ax = fig.subplots()
    image = ax.imshow(rate, cmap="Blues", norm=LogNorm(vmin=1e-3, vmax=1))
    fig.colorbar(image, ax=ax, label="fraction of the true class")
    for (i, j), count in np.ndenumerate(confusion):
        if count:
            dark = rate[i, j] > 0.3
            color = "white" if dark else "black"
            ax.text(j, i, str(count), ha="center", va="center", fontsize=8, color=color)
    ax.set(
        title=title,
        xlabel="predicted",
        ylabel="true",
        xticks=range(k),
        yticks=range(k),
    )
    return fig


def probabilities(params: model.Params, images: np.ndarray) -> np.ndarray:
    """Returns softmax outputs ``(n, k)`` for images ``(n, 784)``, no dropout."""
    k = model.layer_sizes(params)[-1]
    parts = [
        np.asarray(jax.nn.softmax(model.forward(params, jnp.asarray(batch))))
        for batch in np.array_split(images, max(1, -(-len(images) // 2000)))
        if len(batch)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, k), np.float32)


def run_figures(
    out_dir: str | os.PathLike,
    *,
    params: model.Params | None = None,
    splits: Splits | None = None,
    count: int = 50,
) -> dict[str, Figure]:
    """Returns the four figures of a run folder, keyed by their file names.

    params, splits: the trained parameters and the run's data, when the
    caller has them; otherwise they are read from the checkpoint and loaded
    again from the data spec in config.json. count: digits per grid.
    """
    require_matplotlib()
    folder = Path(out_dir)
    config, spec = read_run_config(folder)
    rows = read_metrics(folder) if (folder / METRICS_FILE).exists() else []
    if params is None:
        params, _ = checkpoint.load_params(folder)
    if splits is None:
        splits = spec.load(config.seed)
    images, labels = splits.eval.images, splits.eval.labels
    if labels is None:
        raise MnistJaxError(f"{splits.eval.source} has no labels to plot against")

    predicted = predict(params, images, config.eval_batch_size)
    confusion = confusion_matrix(labels, predicted, model.layer_sizes(params)[-1])
    right, n = int(np.trace(confusion)), len(labels)
    name = splits.eval_name
    probs = probabilities(params, images)
    confidence = probs[np.arange(n), predicted]
    wrong = np.flatnonzero(predicted != labels)
    worst = wrong[np.argsort(-confidence[wrong], kind="stable")[:count]]
    # Spread over the whole set: a set in file order (the sample's dev digits)
    # can start with many of one class.
    shown = np.unique(np.linspace(0, n - 1, min(count, n)).round().astype(int))

    return {
        "curves.png": curves_figure(rows, name),
        "predictions.png": digits_figure(
            images[shown],
            labels[shown],
            predicted[shown],
            confidence[shown],
            f"{len(shown)} {name} digits spread over the set: "
            "predicted (probability), true",
        ),
        "misclassified.png": digits_figure(
            images[worst],
            labels[worst],
            predicted[worst],
            confidence[worst],
            f"{len(wrong)} of {n} {name} digits misclassified; "
            f"the {len(worst)} most confident mistakes",
        ),
        "confusion.png": confusion_figure(
            confusion, f"{name}: {right} of {n} right ({right / max(n, 1):.2%})"
        ),
    }


def plot_run(
    out_dir: str | os.PathLike,
    *,
    params: model.Params | None = None,
    splits: Splits | None = None,
    count: int = 50,
) -> list[Path]:
    """Writes ``run_figures`` as PNGs into the run folder; returns their paths."""
    figures = run_figures(out_dir, params=params, splits=splits, count=count)
    return [save(figures[name], Path(out_dir) / name) for name in FILES]
