"""Plots: what each figure draws, and the four PNGs of a run folder."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from matplotlib.image import imread
from run_helpers import blobs, blobs_csv, tiny_flags

from mnist_jax import checkpoint, plots, train
from mnist_jax.cli import main
from mnist_jax.data import Dataset, Splits
from mnist_jax.errors import MnistJaxError
from mnist_jax.run import DataSpec

ROWS = [
    {"epoch": 1, "train_loss": 0.9, "train_accuracy": 0.7, "eval_accuracy": 0.94,
     "lr": 3e-3},
    {"epoch": 2, "train_loss": 0.5, "train_accuracy": 0.85, "eval_accuracy": 0.96,
     "lr": 2.7e-3},
]  # fmt: skip


def test_curves_show_loss_accuracies_and_learning_rate_per_epoch():
    fig = plots.curves_figure(ROWS, "test")

    loss_ax, acc_ax, lr_ax = fig.axes
    assert list(loss_ax.lines[0].get_xdata()) == [1, 2]
    assert list(loss_ax.lines[0].get_ydata()) == [0.9, 0.5]
    train, test = acc_ax.lines
    assert (train.get_label(), list(train.get_ydata())) == ("train", [0.7, 0.85])
    assert (test.get_label(), list(test.get_ydata())) == ("test", [0.94, 0.96])
    assert list(lr_ax.lines[0].get_ydata()) == [3e-3, 2.7e-3]
    assert lr_ax.get_yscale() == "log"


def test_curves_of_a_run_without_a_finished_epoch_say_so():
    fig = plots.curves_figure([])

    assert fig.get_suptitle() == "no finished epoch yet"


def test_digit_titles_give_prediction_probability_and_truth_in_colour():
    images, labels = blobs(3)
    predicted = np.array([labels[0], (labels[1] + 1) % 10, labels[2]])

    fig = plots.digits_figure(images, labels, predicted, np.array([0.9, 0.5, 1]), "t")

    titles = [ax.title for ax in fig.axes[:3]]
    assert titles[1].get_text() == f"{predicted[1]} (50%)\ntrue {labels[1]}"
    assert [t.get_color() for t in titles] == [plots.RIGHT, plots.WRONG, plots.RIGHT]
    assert all(not ax.images for ax in fig.axes[3:])  # the rest of the row is blank


def test_confusion_cells_hold_the_counts_with_rows_true_and_columns_predicted():
    confusion = np.array([[5, 1, 0], [0, 7, 2], [0, 0, 9]])

    fig = plots.confusion_figure(confusion, "dev")

    ax = fig.axes[0]
    cells = {(t.get_position(), t.get_text()) for t in ax.texts}
    assert cells == {
        ((0, 0), "5"),
        ((1, 0), "1"),
        ((1, 1), "7"),
        ((2, 1), "2"),
        ((2, 2), "9"),
    }
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted", "true")
    assert np.ma.is_masked(ax.images[0].get_array()[0, 2])  # no count, no colour


def test_without_matplotlib_the_error_says_how_to_install_it(monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)

    with pytest.raises(MnistJaxError, match=r'pip install "mnist-jax\[plot\]"'):
        plots.curves_figure(ROWS)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """Returns a two-epoch run folder on 200 blobs, 40 held out, written by --plot."""
    folder = tmp_path_factory.mktemp("plots")
    csv = blobs_csv(folder / "blobs.csv")
    flags = tiny_flags(csv, "--out", str(folder / "run"), "--epochs", "2", "--plot")
    assert main(flags) == 0
    return folder / "run"


def test_train_with_plot_writes_the_four_pngs_into_the_run(run_dir, capsys):
    for name in plots.FILES:
        image = imread(run_dir / name)
        assert image.ndim == 3 and min(image.shape[:2]) > 100, name


def test_plot_draws_them_again_from_the_folder_alone(run_dir, capsys):
    for name in plots.FILES:
        (run_dir / name).unlink()

    assert main(["plot", str(run_dir), "--count", "12"]) == 0

    out = capsys.readouterr().out
    assert [line.split()[-1] for line in out.splitlines()] == [
        str(run_dir / name) for name in plots.FILES
    ]
    assert all((run_dir / name).stat().st_size > 0 for name in plots.FILES)


def test_the_misclassified_grid_shows_only_mistakes_most_confident_first(run_dir):
    splits = DataSpec(str(run_dir.parent / "blobs.csv"), dev_size=40).load(0)
    labels = splits.eval.labels.copy()
    labels[:5] = (labels[:5] + 1) % 10  # now the model is wrong on at least these
    relabelled = Dataset(splits.eval.images, labels, "relabelled")
    splits = Splits(splits.train, relabelled, "dev")
    params, _ = checkpoint.load_params(run_dir)
    wrong = int((train.predict(params, relabelled.images) != labels).sum())

    fig = plots.run_figures(run_dir, splits=splits, count=50)["misclassified.png"]

    shown = [ax for ax in fig.axes if ax.images]
    assert 5 <= len(shown) == wrong
    assert all(ax.title.get_color() == plots.WRONG for ax in shown)
    assert fig.get_suptitle().startswith(f"{wrong} of 40 dev digits misclassified")
    percents = [int(ax.title.get_text().split("(")[1].split("%")[0]) for ax in shown]
    assert percents == sorted(percents, reverse=True)


def test_plot_of_a_folder_without_a_run_is_one_clear_error(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    assert "config.json: missing; is" in capsys.readouterr().err


def test_the_predictions_grid_samples_the_whole_set_not_its_start(run_dir):
    splits = DataSpec(str(run_dir.parent / "blobs.csv"), dev_size=40).load(0)
    ordered = np.argsort(splits.eval.labels, kind="stable")  # all of a class first
    by_class = Dataset(splits.eval.images[ordered], splits.eval.labels[ordered], "x")

    fig = plots.run_figures(
        run_dir, splits=Splits(splits.train, by_class, "dev"), count=10
    )["predictions.png"]

    titles = [ax.title.get_text() for ax in fig.axes if ax.images]
    true = {int(title.rsplit("true ", 1)[1]) for title in titles}
    assert len(titles) == 10
    # The first and the last class of the sorted set are both shown.
    assert {int(by_class.labels[0]), int(by_class.labels[-1])} <= true
    assert fig.get_suptitle().startswith("10 dev digits spread over the set")
