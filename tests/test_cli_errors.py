"""Bad flags and paths found by a new user: one line, no traceback."""

import json

import numpy as np
import pytest

from mnist_jax import data
from mnist_jax.cli import main
from mnist_jax.run import read_metrics

QUICK = ["--epochs", "1", "--no-progress", "--no-augment", "--dev-size", "20"]


@pytest.fixture()
def tiny_csv(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.arange(100, dtype=np.int32) % 10
    images = rng.integers(0, 256, (100, 784)).astype(np.uint8)
    path = tmp_path / "tiny.csv"
    data.write_csv(path, data.Dataset(images, labels, "tiny"))
    return path


def run_cli(argv, capsys):
    status = main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return status, captured


def test_out_naming_a_file_is_refused(tiny_csv, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("mine")

    status, out = run_cli(
        ["train", "--data", str(tiny_csv), "--out", str(afile), *QUICK], capsys
    )

    assert status == 2
    assert "is a file; name a folder" in out.err
    assert afile.read_text() == "mine"


def test_out_inside_a_file_is_one_line(tiny_csv, tmp_path, capsys):
    (tmp_path / "afile").write_text("mine")

    status, out = run_cli(
        [
            "train",
            "--data",
            str(tiny_csv),
            "--out",
            str(tmp_path / "afile" / "sub"),
            *QUICK,
        ],
        capsys,
    )

    assert status == 2
    assert len(out.err.strip().splitlines()) == 1


def test_first_layer_size_must_match_the_images(tiny_csv, capsys):
    status, out = run_cli(
        ["train", "--data", str(tiny_csv), "--sizes", "783,10", *QUICK], capsys
    )

    assert status == 2
    assert "start --sizes with 784" in out.err


def test_too_few_output_classes_names_the_flag(tiny_csv, capsys):
    status, out = run_cli(
        ["train", "--data", str(tiny_csv), "--sizes", "784,5", *QUICK], capsys
    )

    assert status == 2
    assert "the last of --sizes gives 5 classes" in out.err


@pytest.mark.parametrize("seed", ["-1", "99999999999999999999"])
def test_seed_out_of_range_is_refused(seed, capsys):
    status, out = run_cli(["train", "--seed", seed, "--no-progress"], capsys)

    assert status == 2
    assert "seed must be in 0..4294967295" in out.err


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--lr", "inf", "learning rate must be finite"),
        ("--decay-steps", "99999999999999999999", "decay steps must be below"),
        ("--chunk-steps", "100000000", "chunk steps must be in 1..100000"),
    ],
)
def test_extreme_flag_values_are_refused_before_training(flag, value, message, capsys):
    status, out = run_cli(["train", flag, value, "--no-progress"], capsys)

    assert status == 2
    assert message in out.err


def test_a_folder_with_only_config_json_can_be_trained_into(tiny_csv, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")

    status, _ = run_cli(
        ["train", "--data", str(tiny_csv), "--out", str(run), *QUICK], capsys
    )

    assert status == 0
    assert (run / "checkpoint.npz").exists()


def test_a_garbled_metrics_line_is_named(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\nnot json\n')

    with pytest.raises(Exception, match="line 2 is not JSON"):
        read_metrics(tmp_path)


def test_evaluate_without_data_uses_the_runs_own_evaluation_split(
    tiny_csv, tmp_path, capsys
):
    run = tmp_path / "run"
    run_cli(["train", "--data", str(tiny_csv), "--out", str(run), *QUICK], capsys)

    status, out = run_cli(["evaluate", "--checkpoint", str(run), "--json"], capsys)

    assert status == 0
    assert json.loads(out.out)["count"] == 20


def test_a_malformed_mirror_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MNIST_JAX_MIRROR", "not a url")

    status, out = run_cli(["train", "--data", "mnist", "--no-progress"], capsys)

    assert status == 2
    assert "MNIST_JAX_MIRROR is 'not a url', not an http(s) or file URL" in out.err


def test_preview_count_is_bounded(capsys, tmp_path):
    status, out = run_cli(
        [
            "augment-preview",
            "--data",
            "sample",
            "--count",
            "100000",
            "--out",
            str(tmp_path / "p.png"),
        ],
        capsys,
    )

    assert status == 2
    assert "--count must be in 1..100" in out.err


def test_an_unexpected_error_is_one_line_with_a_hint(monkeypatch, capsys):
    import mnist_jax.commands.train as train_command

    def broken(args):
        raise RuntimeError("something nobody planned for")

    monkeypatch.setattr(train_command, "run", broken)
    status, out = run_cli(["train"], capsys)

    assert status == 1
    assert out.err.strip() == (
        "mnist-jax train: error: unexpected RuntimeError: something nobody "
        "planned for (run mnist-jax --verbose ... for the traceback)"
    )


def test_out_of_memory_is_one_line_naming_the_flags_to_shrink(monkeypatch, capsys):
    from mnist_jax.commands import gradcheck

    def exhausted(args):
        raise RuntimeError(
            "RESOURCE_EXHAUSTED: Out of memory allocating 313600000000 bytes.\n"
            "more detail on a second line"
        )

    monkeypatch.setattr(gradcheck, "run", exhausted)

    assert main(["gradcheck"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "out of memory (RESOURCE_EXHAUSTED" in err and "--batch-size" in err


def test_a_closed_pipe_ends_the_command_quietly(monkeypatch, capsys):
    from mnist_jax.commands import gradcheck

    def reader_gone(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(gradcheck, "run", reader_gone)

    assert main(["gradcheck"]) == 141
    assert capsys.readouterr().err == ""


def test_predict_will_not_write_over_its_own_input(tiny_csv, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_csv), "--dev-size", "10", "--epochs",
                 "1", "--sizes", "784,8,10", "--out", str(run), "--no-progress",
                 "--no-augment"]) == 0  # fmt: skip
    before = tiny_csv.read_bytes()
    capsys.readouterr()

    status = main(["predict", "--checkpoint", str(run), "--data", str(tiny_csv),
                   "--out", str(tiny_csv)])  # fmt: skip

    assert status == 2
    assert "is the --data file; write the predictions elsewhere" in (
        capsys.readouterr().err
    )
    assert tiny_csv.read_bytes() == before


def test_empty_data_is_refused_rather_than_read_as_this_folder(capsys):
    assert main(["train", "--data", " ", "--epochs", "1", "--no-progress"]) == 2
    assert "--data is empty; give a CSV file" in capsys.readouterr().err


def test_verbose_turns_on_our_debug_lines_only(tmp_path, capsys):
    import logging

    missing = str(tmp_path / "none")
    main(["--verbose", "predict", "--checkpoint", missing, "--out", missing])

    assert logging.getLogger("mnist_jax").getEffectiveLevel() == logging.DEBUG
    assert logging.getLogger("matplotlib").getEffectiveLevel() > logging.DEBUG
    logging.getLogger("mnist_jax").setLevel(logging.NOTSET)
