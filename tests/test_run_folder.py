"""Run folders through the command line: refuse, overwrite, resume, diverge."""

from __future__ import annotations

import json

import chex
import pytest
from run_helpers import blobs_csv, tiny_flags

from mnist_jax import checkpoint
from mnist_jax.cli import main
from mnist_jax.errors import MnistJaxError
from mnist_jax.run import DataSpec, read_metrics, train_run
from mnist_jax.train import Diverged, TrainConfig

STEPS_PER_EPOCH = 10  # 160 training rows in batches of 16


@pytest.fixture
def csv(tmp_path):
    return blobs_csv(tmp_path / "blobs.csv")


def train(csv, out, *extra: str) -> int:
    return main(tiny_flags(csv, "--out", str(out), *extra))


def test_an_existing_run_is_refused_and_left_as_it_was(csv, tmp_path, capsys):
    out = tmp_path / "run"
    assert train(csv, out, "--epochs", "1") == 0
    before = (out / "checkpoint.npz").read_bytes()
    capsys.readouterr()

    status = train(csv, out, "--epochs", "2")

    err = capsys.readouterr().err
    assert status == 2
    assert "already holds a run; pass --resume to continue it or --overwrite" in err
    assert "Traceback" not in err
    assert (out / "checkpoint.npz").read_bytes() == before
    assert len(read_metrics(out)) == 1


def test_overwrite_starts_the_run_again(csv, tmp_path):
    out = tmp_path / "run"
    assert train(csv, out, "--epochs", "2") == 0

    assert train(csv, out, "--epochs", "1", "--overwrite", "--lr", "0.01") == 0

    assert [row["epoch"] for row in read_metrics(out)] == [1]
    assert json.loads((out / "config.json").read_text())["config"]["lr"] == 0.01


def test_overwrite_removes_the_old_runs_figures(csv, tmp_path):
    out = tmp_path / "run"
    assert train(csv, out, "--epochs", "1") == 0
    (out / "curves.png").write_bytes(b"an old run's figure")
    (out / "notes.txt").write_text("the user's own file")

    assert train(csv, out, "--epochs", "1", "--overwrite") == 0

    assert not (out / "curves.png").exists()
    assert (out / "notes.txt").read_text() == "the user's own file"


def test_resume_with_more_epochs_matches_a_run_that_had_them_all(csv, tmp_path):
    assert train(csv, tmp_path / "whole", "--epochs", "2") == 0
    assert train(csv, tmp_path / "parts", "--epochs", "1") == 0

    # A finished run resumed without --epochs has nothing left to do.
    assert main(["train", "--out", str(tmp_path / "parts"), "--resume"]) == 2
    assert train(csv, tmp_path / "parts", "--epochs", "2", "--resume") == 0

    whole, _ = checkpoint.load_params(tmp_path / "whole")
    parts, _ = checkpoint.load_params(tmp_path / "parts")
    chex.assert_trees_all_equal(whole, parts)
    assert [row["epoch"] for row in read_metrics(tmp_path / "parts")] == [1, 2]


def test_divergence_names_epoch_and_step_and_keeps_the_last_good_checkpoint(
    csv, tmp_path, capsys
):
    out = tmp_path / "run"
    assert train(csv, out, "--epochs", "1") == 0
    good = (out / "checkpoint.npz").read_bytes()
    # The saved config is what --resume trains with: make epoch 2 blow up.
    record = json.loads((out / "config.json").read_text())
    record["config"]["lr"] = 1e30
    (out / "config.json").write_text(json.dumps(record))
    capsys.readouterr()

    status = train(csv, out, "--epochs", "2", "--resume")

    err = capsys.readouterr().err
    assert status == 2
    assert "Traceback" not in err
    assert "training diverged in epoch 2 by step " in err
    assert "try a lower --lr" in err
    kept = f"last good checkpoint (step {STEPS_PER_EPOCH}, end of epoch 1) is kept"
    assert f"{kept} in {out}" in err
    assert (out / "checkpoint.npz").read_bytes() == good
    assert len(read_metrics(out)) == 1
    assert not list(out.glob(".checkpoint-*"))


def test_divergence_in_the_first_epoch_says_nothing_was_saved(csv, tmp_path):
    config = TrainConfig(sizes=(784, 16, 10), batch_size=16, lr=1e30, augment=None)
    data = DataSpec(str(csv), dev_size=40)

    with pytest.raises(Diverged, match=r"epoch 1 by step \d+.*no checkpoint was"):
        train_run(config, data, out_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


def test_a_stop_asked_after_the_last_step_is_not_an_interruption(csv, tmp_path):
    config = TrainConfig(
        sizes=(784, 16, 10), batch_size=16, epochs=2, chunk_steps=3, augment=None
    )
    data = DataSpec(str(csv), dev_size=40)
    epochs: list[int] = []

    def stop_after_epoch_2() -> bool:
        return len(epochs) == 2

    def stop_after_7_chunks() -> bool:
        chunks.append(1)
        return len(chunks) >= 7

    done = train_run(
        config,
        data,
        on_epoch=lambda result, state: epochs.append(result.epoch),
        should_stop=stop_after_epoch_2,
    )
    chunks: list[int] = []
    stopped = train_run(config, data, should_stop=stop_after_7_chunks)

    assert not done.interrupted
    assert stopped.interrupted
    # Asked before the first chunk, after the chunks ending at steps 3, 6, 9,
    # after epoch 1, then at 13 and 16, where the seventh answer stops it.
    assert int(stopped.state.step) == STEPS_PER_EPOCH + 6


def test_plot_without_a_run_folder_is_refused_before_training(csv, capsys):
    assert main(tiny_flags(csv, "--plot", "--epochs", "50")) == 2
    assert "--plot writes into the run folder; give --out" in capsys.readouterr().err


def test_resume_needs_a_run_folder(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path), "--resume"]) == 2
    assert "config.json: missing; is" in capsys.readouterr().err
    with pytest.raises(MnistJaxError, match="--resume needs --out, the run folder"):
        train_run(TrainConfig(), resume=True)


def test_resume_with_no_more_epochs_is_refused_and_leaves_the_run_as_it_was(
    csv, tmp_path, capsys
):
    out = tmp_path / "run"
    assert train(csv, out, "--epochs", "2") == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()

    for epochs in ("1", "2"):
        assert train(csv, out, "--epochs", epochs, "--resume") == 2
        err = capsys.readouterr().err
        assert "has already trained 2 epochs (step 20); pass --epochs with more" in err

    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_resume_and_overwrite_together_are_refused(csv, tmp_path, capsys):
    out = tmp_path / "run"
    assert train(csv, out, "--epochs", "1") == 0
    capsys.readouterr()

    assert train(csv, out, "--epochs", "2", "--resume", "--overwrite") == 2
    assert "pass one of them" in capsys.readouterr().err


def test_overwrite_swaps_a_single_run_and_a_many_model_run_cleanly(csv, tmp_path):
    out = tmp_path / "run"
    assert train(csv, out, "--epochs", "1") == 0

    assert train(csv, out, "--epochs", "1", "--seeds", "2", "--overwrite") == 0
    names = sorted(p.name for p in out.iterdir())
    assert "checkpoint.npz" not in names and "config.json" not in names
    assert {"ensemble.json", "model-0", "model-1"} <= set(names)

    assert train(csv, out, "--epochs", "1") == 2  # a many-model run is a run too
    assert train(csv, out, "--epochs", "1", "--overwrite") == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["checkpoint.npz", "config.json", "metrics.jsonl"]


def test_resume_of_a_many_model_run_says_what_it_is(csv, tmp_path, capsys):
    out = tmp_path / "many"
    assert train(csv, out, "--epochs", "1", "--seeds", "2") == 0
    capsys.readouterr()

    assert main(["train", "--out", str(out), "--resume"]) == 2
    assert "holds a many-model run (ensemble.json)" in capsys.readouterr().err
