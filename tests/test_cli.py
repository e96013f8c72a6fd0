"""The command line end to end, as a user runs it, on a few hundred real digits."""

import json

import numpy as np
import pytest

from mnist_jax import data
from mnist_jax.cli import main

FAST = ["--epochs", "10", "--batch-size", "64", "--no-progress", "--no-augment"]
METRIC_KEYS = {
    "epoch",
    "step",
    "lr",
    "train_loss",
    "train_accuracy",
    "eval_accuracy",
    "seconds",
}


@pytest.fixture(scope="module")
def digits_csv(shared_data, tmp_path_factory):
    """Writes 600 real training digits and 300 real test digits as Kaggle CSVs."""
    sets = data.load(str(shared_data / "mnist"))
    folder = tmp_path_factory.mktemp("kaggle")
    train = data.Dataset(sets["train"].images[:600], sets["train"].labels[:600], "t")
    test = data.Dataset(sets["test"].images[:300], sets["test"].labels[:300], "t")
    data.write_csv(folder / "train.csv", train)
    data.write_csv(folder / "test.csv", test)
    unlabelled = data.Dataset(test.images[:25], None, "t")
    data.write_csv(folder / "unlabelled.csv", unlabelled)
    return folder


def train_digits(digits_csv, run) -> int:
    """Trains on the real digits' train.csv into ``run``; returns the status."""
    train_csv = str(digits_csv / "train.csv")
    return main(
        ["train", "--data", train_csv, "--dev-size", "100", "--out", str(run), *FAST]
    )


def test_train_evaluate_predict_on_real_digits(digits_csv, tmp_path, capsys):
    run = tmp_path / "run"

    status = train_digits(digits_csv, run)
    out = capsys.readouterr().out
    rows = [
        json.loads(line)
        for line in (run / "metrics.jsonl").read_text().split("\n")
        if line
    ]

    assert status == 0
    assert "epoch  10/10" in out and "final dev accuracy" in out
    assert len(rows) == 10 and all(row.keys() >= METRIC_KEYS for row in rows)
    assert rows[-1]["eval_accuracy"] > 0.7
    assert json.loads((run / "config.json").read_text())["config"]["epochs"] == 10

    status = main(
        [
            "evaluate",
            "--checkpoint",
            str(run),
            "--json",
            "--data",
            str(digits_csv / "test.csv"),
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert status == 0
    assert report["count"] == 300
    assert np.sum(report["confusion"]) == 300
    assert report["accuracy"] > 0.7

    submission = tmp_path / "submission.csv"
    status = main(
        [
            "predict",
            "--checkpoint",
            str(run),
            "--out",
            str(submission),
            "--data",
            str(digits_csv / "unlabelled.csv"),
        ]
    )
    lines = submission.read_text().splitlines()
    assert status == 0
    assert lines[0] == "ImageId,Label"
    assert [line.split(",")[0] for line in lines[1:]] == [str(i) for i in range(1, 26)]
    assert all(line.split(",")[1] in "0123456789" for line in lines[1:])


def test_csv_written_from_idx_trains_exactly_like_the_idx_files(
    shared_data, tmp_path, capsys
):
    idx = tmp_path / "idx"
    idx.mkdir()
    sets = data.load(str(shared_data / "mnist"))
    for part, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = sets[part].images[:400], sets[part].labels[:400]
        header = np.array([2051, len(images), 28, 28], ">u4").tobytes()
        (idx / f"{prefix}-images-idx3-ubyte").write_bytes(header + images.tobytes())
        header = np.array([2049, len(labels)], ">u4").tobytes()
        (idx / f"{prefix}-labels-idx1-ubyte").write_bytes(
            header + labels.astype(np.uint8).tobytes()
        )
        data.write_csv(tmp_path / f"{part}.csv", data.Dataset(images, labels, part))

    main(["train", "--data", str(idx), "--out", str(tmp_path / "a"), *FAST])
    main(
        [
            "train",
            "--data",
            str(tmp_path / "train.csv"),
            "--eval-data",
            str(tmp_path / "test.csv"),
            "--out",
            str(tmp_path / "b"),
            *FAST,
        ]
    )
    capsys.readouterr()

    a, b = (np.load(tmp_path / r / "checkpoint.npz") for r in ("a", "b"))
    for name in a.files:
        if name != "meta":
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_resume_extends_a_finished_run_with_its_saved_settings(
    digits_csv, tmp_path, capsys
):
    run = tmp_path / "run"
    train_digits(digits_csv, run)
    capsys.readouterr()

    status = main(
        ["train", "--resume", "--out", str(run), "--epochs", "12", "--no-progress"]
    )
    out = capsys.readouterr().out
    rows = (run / "metrics.jsonl").read_text().splitlines()

    assert status == 0
    assert "epoch  11/12" in out and "epoch  12/12" in out
    assert [json.loads(r)["epoch"] for r in rows] == list(range(1, 13))


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["evaluate", "--checkpoint", "/nonexistent/run", "--data", "sample"],
            "no checkpoint there",
        ),
        (["train", "--data", "/nonexistent.csv", "--no-progress"], "nonexistent"),
        (["train", "--lr", "-1", "--no-progress"], "learning rate must be positive"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_traceback(argv, message, capsys):
    status = main(argv)
    err = capsys.readouterr().err

    assert status == 2
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
