"""The benchmark: its machinery runs and reports; no figure is asserted."""

import importlib
import importlib.util
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mnist_jax import bench, model
from mnist_jax.cli import main
from mnist_jax.commands.bench import find_benchmarks
from mnist_jax.errors import MnistJaxError

find_benchmarks()  # puts the checkout's benchmarks/ on the path
numpy_mlp = importlib.import_module("benchmarks.numpy_mlp")
report = importlib.import_module("benchmarks.report")
scipy_augment = importlib.import_module("benchmarks.scipy_augment")
suite = importlib.import_module("benchmarks.suite")


@pytest.fixture(scope="module")
def tiny_report():
    """One run of the tiny plan without PyTorch (a few seconds, mostly compiling)."""
    return suite.run(suite.PLANS["tiny"], with_torch=False)


def test_training_flops_count_every_matmul_but_the_images_gradient():
    flops = bench.flops_per_example((784, 100, 50, 20, 10))

    assert flops["macs"] == 84_600
    assert flops["forward"] == flops["weight_grads"] == 169_200
    assert flops["input_grads"] == 2 * (100 * 50 + 50 * 20 + 20 * 10)
    assert flops["train"] == 350_800
    assert flops["train_6_macs"] == 507_600


def test_timing_reports_median_and_range_of_rates():
    timing = bench.Timing((1.0, 2.0, 4.0), work=8.0)

    assert timing.rates() == {"median": 4.0, "min": 2.0, "max": 8.0}
    with pytest.raises(MnistJaxError, match="positive seconds"):
        bench.Timing((), work=1.0)


@pytest.mark.slow
def test_tiny_run_records_every_measure_with_positive_figures(tiny_report):
    measures = {(r["system"], r["measure"]) for r in tiny_report["results"]}

    for system, measure in [
        ("jax", "train"),
        ("jax", "epoch"),
        ("jax", "inference"),
        ("jax", "augment"),
        ("jax", "compile train"),
        ("numpy", "train"),
        ("numpy", "inference"),
        ("scipy", "augment"),
    ]:
        assert (system, measure) in measures
    for r in tiny_report["results"]:
        assert 0 < r["min"] <= r["median"] <= r["max"], r
    trains = [r for r in tiny_report["results"] if r["measure"] == "train"]
    assert all(r["of_matmul_peak"] > 0 for r in trains)
    assert {r["augment"] for r in trains if r["system"] == "jax"} == {False, True}


@pytest.mark.slow
def test_tiny_run_names_device_versions_ceiling_and_left_out_peers(tiny_report):
    assert tiny_report["schema"] == suite.SCHEMA
    assert tiny_report["machine"]["backend"] == jax.default_backend()
    assert tiny_report["versions"]["jax"] == jax.__version__
    ceiling = tiny_report["ceiling"]
    assert ceiling["matmul_flops_per_s"]["median"] > 0
    # The peak is the better of the run's start and its end.
    ends = [ceiling[f"matmul_flops_per_s_at_{e}"]["max"] for e in ("start", "end")]
    assert ceiling["matmul_flops_per_s"]["max"] == max(ends)
    assert {"system": "torch", "why": "left out with --no-torch"} in tiny_report[
        "skipped"
    ]
    assert tiny_report["memory"]["jax"]["peak_rss_bytes"] > 0
    unmeasured = [t for t in tiny_report["targets"] if "PyTorch" in t["target"]]
    assert unmeasured and all(t["met"] is None for t in unmeasured)


@pytest.mark.slow
def test_report_is_markdown_tables_and_json_that_round_trips(tiny_report, tmp_path):
    text = report.markdown(tiny_report)
    path = report.write_json(tiny_report, tmp_path / "out" / "bench.json")

    assert "| system | measure | batch | aug | median |" in text
    assert "| jax | train | 32 | yes |" in text
    assert "## Targets" in text and "not measured" in text
    assert json.loads(path.read_text()) == json.loads(json.dumps(tiny_report))


def test_numpy_peer_backprop_equals_jax_gradients():
    rng = np.random.default_rng(0)
    params = numpy_mlp.init_params(rng, (784, 16, 8, 10))
    x = rng.random((5, 784), np.float32)
    labels = rng.integers(0, 10, 5)

    loss, grads = numpy_mlp.loss_and_grads(params, x, labels)
    jax_params = jax.tree_util.tree_map(jnp.asarray, params)
    jax_loss, jax_grads = jax.jit(jax.value_and_grad(model.loss_fn))(
        jax_params, jnp.asarray(x), jnp.asarray(labels)
    )

    assert loss == pytest.approx(float(jax_loss), rel=1e-5)
    for ours, theirs in zip(grads, jax_grads, strict=True):
        for name in ("w", "b"):
            np.testing.assert_allclose(ours[name], theirs[name], atol=1e-5)


def test_scipy_peer_keeps_28_by_28_after_zooming_in_and_out():
    image = np.zeros((28, 28), np.float32)
    image[10:18, 12:16] = 1.0

    for zoom in (0.9, 1.1):
        out = scipy_augment.augment_one(image, 0.0, 0.0, 0.0, zoom)
        assert out.shape == (28, 28)
        assert out.sum() == pytest.approx(image.sum() * zoom**2, rel=0.2)


def test_flags_choose_the_plan():
    parser = importlib.import_module("benchmarks.cli").build_parser()

    assert parser.parse_args([]).plan == "full"
    assert parser.parse_args(["--quick"]).plan == "quick"
    assert parser.parse_args(["--plan", "tiny"]).plan == "tiny"


def test_bench_command_outside_a_checkout_is_one_line_error(tmp_path, capsys):
    with pytest.raises(MnistJaxError, match="source checkout"):
        find_benchmarks([tmp_path])

    assert main(["bench", "--torch-threads", "0", "--no-torch"]) == 2
    assert "--torch-threads must be 1 or more" in capsys.readouterr().err


def test_a_record_survives_the_trip_through_a_dict():
    record = bench.Record(
        "torch", "train", 128, True, "examples/s", 3.0, 2.0, 4.0, 5, {"threads": 2}
    )

    assert bench.Record.from_dict(record.to_dict()) == record


@pytest.mark.slow
def test_the_pytorch_peer_runs_in_a_child_process_or_is_skipped_with_a_reason():
    plan = suite.PLANS["tiny"]
    images, labels = suite.synthetic_digits(plan.n_train)
    current = suite.Run(plan)

    version = suite._torch_in_child(current, images, labels, 1)

    if importlib.util.find_spec("torch") is None:
        assert version is None and current.records == []
        assert "PyTorch is not installed" in current.skipped[0]["why"]
    else:
        assert version and current.skipped == []
        measures = {(r.system, r.measure) for r in current.records}
        assert ("torch", "train") in measures and ("torch", "inference") in measures
        assert current.memory["torch"]["peak_rss_bytes"] > 0
