"""Training: one compiled program per run, seeded, resumable, nothing dropped."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from run_helpers import blobs

from mnist_jax import checkpoint, model, train
from mnist_jax.errors import MnistJaxError
from mnist_jax.evaluate import evaluate
from mnist_jax.schedules import inverse_time_decay
from mnist_jax.train import TrainConfig, fit

SMALL = dict(sizes=(784, 16, 10), batch_size=32, chunk_steps=4, lr=3e-3, augment=None)


def test_epoch_order_is_a_permutation_padded_with_minus_one():
    order = np.asarray(train.epoch_order(jax.random.key(0), 3, 70, 32))

    assert order.shape == (96,)
    assert sorted(order[order >= 0].tolist()) == list(range(70))
    assert (order == -1).sum() == 26


def test_epoch_order_changes_between_epochs_and_repeats_for_the_same_epoch():
    key = jax.random.key(0)
    a, b = (np.asarray(train.epoch_order(key, e, 50, 10)) for e in (0, 1))
    again = np.asarray(train.epoch_order(key, 0, 50, 10))

    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, again)


def test_training_learns_separable_blobs():
    images, labels = blobs(400)
    config = TrainConfig(**SMALL, epochs=5)

    _, history = fit(images[:300], labels[:300], images[300:], labels[300:], config)

    assert len(history) == 5
    assert history[-1].eval_accuracy > 0.9
    assert history[-1].train_loss < history[0].train_loss


def test_short_last_batch_counts_every_example_and_compiles_once(monkeypatch):
    traces = []
    real_forward = model.forward

    def counting_forward(*args, **kwargs):
        traces.append(args[1].shape)
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", counting_forward)
    images, labels = blobs(130)
    seen = []

    def on_epoch(result, state):
        seen.append(result.step)

    three = TrainConfig(**SMALL, epochs=3)
    fit(
        images[:100], labels[:100], images[100:], labels[100:], three, on_epoch=on_epoch
    )

    assert traces.count((32, 784)) == 1  # one training program for 12 steps
    assert seen == [4, 8, 12]  # ceil(100 / 32) steps an epoch: nothing dropped


def test_epoch_loss_averages_over_real_rows_only():
    images, labels = blobs(100)
    config = TrainConfig(**{**SMALL, "chunk_steps": 8}, epochs=1)
    state = train.init_state(config, 100)
    runner = train.make_chunk_runner(config, train.make_optimizer(config, 100), 100)
    order = train.epoch_order(state.key, 0, 100, config.batch_size)

    state = runner(state, jnp.asarray(images), jnp.asarray(labels), order)

    assert int(state.step) == 4
    assert float(state.stats[2]) == 100.0


def test_same_seed_gives_identical_parameters_and_another_seed_does_not():
    images, labels = blobs(200)
    runs = [
        fit(
            images,
            labels,
            images[:50],
            labels[:50],
            TrainConfig(**SMALL, epochs=2, seed=seed),
        )[0].params
        for seed in (7, 7, 8)
    ]

    chex.assert_trees_all_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0][0]["w"], runs[2][0]["w"])


def test_resuming_mid_epoch_from_a_checkpoint_matches_an_uninterrupted_run(
    tmp_path,
):
    images, labels = blobs(200)
    config = TrainConfig(**SMALL, epochs=2)
    full, _ = fit(images, labels, images[:50], labels[:50], config)

    chunks = []
    stop = lambda: len(chunks) >= 3  # noqa: E731
    part, _ = fit(
        images,
        labels,
        images[:50],
        labels[:50],
        config,
        on_progress=lambda d, t: chunks.append(d),
        should_stop=stop,
    )
    assert 0 < int(part.step) < 14
    checkpoint.save(tmp_path, part, config)
    restored, _ = checkpoint.load(tmp_path, 200, config)
    resumed, _ = fit(images, labels, images[:50], labels[:50], config, state=restored)

    chex.assert_trees_all_equal(full.params, resumed.params)
    chex.assert_trees_all_equal(full.opt_state, resumed.opt_state)


def test_metrics_lr_is_the_rate_optax_applied_at_the_epochs_last_step():
    images, labels = blobs(96)
    config = TrainConfig(**SMALL, epochs=4, decay_steps=2, decay_rate=0.5)
    schedule = inverse_time_decay(config.lr, 0.5, 2)

    _, history = fit(images, labels, images[:20], labels[:20], config)

    for result in history:
        applied_at = result.step - 1
        closed_form = config.lr / (1 + 0.5 * (applied_at // 2))
        assert result.lr == pytest.approx(closed_form, rel=1e-6)
        assert result.lr == pytest.approx(float(schedule(applied_at)), rel=1e-6)


def test_diverging_run_stops_with_a_message_naming_epoch_and_step():
    images, labels = blobs(64)
    config = TrainConfig(**{**SMALL, "lr": 1e30}, epochs=2)

    with pytest.raises(train.Diverged, match=r"epoch 1 by step \d+.*lower --lr"):
        fit(images, labels, images[:10], labels[:10], config)


def test_labels_outside_the_classes_are_refused_before_training():
    images, labels = blobs(64)
    labels[5] = 10

    with pytest.raises(Exception, match="label 10 at index 5 is outside 0..9"):
        fit(images, labels, images, labels, TrainConfig(**SMALL, epochs=1))


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("lr", 0.0, "learning rate must be positive"),
        ("keep_prob", 0.0, "keep-prob must be in"),
        ("batch_size", 0, "batch size must be 1 or more"),
        ("schedule", "linear", "unknown schedule 'linear'"),
        ("epochs", "3", "epochs must be a whole number, got '3'"),
        ("batch_size", 2.5, "batch_size must be a whole number, got 2.5"),
        ("lr", "0.1", "lr must be a number, got '0.1'"),
        ("lr", 1e308, "learning rate must fit in float32"),
        ("chunk_steps", 0, "chunk steps must be in 1..100000, got 0"),
    ],
)
def test_bad_config_values_are_one_line_errors(field, value, message):
    with pytest.raises(Exception, match=message):
        TrainConfig(**{field: value})


def test_predict_counts_every_example_of_an_uneven_set():
    images, labels = blobs(1234)
    config = TrainConfig(**SMALL, epochs=3)
    state, _ = fit(images, labels, images[:10], labels[:10], config)

    predictions = train.predict(state.params, images, batch_size=500)
    direct = np.argmax(model.forward(state.params, jnp.asarray(images)), axis=-1)

    assert predictions.shape == (1234,)
    np.testing.assert_array_equal(predictions, direct)


@pytest.mark.parametrize("predraw", [True, False])
@pytest.mark.parametrize(
    "augment", [None, dict(train.AUGMENT), {**train.AUGMENT, "elastic": (8.0, 3.0)}]
)
def test_a_chunk_runs_the_same_steps_as_the_step_function_one_by_one(
    augment, predraw, monkeypatch
):
    # The chunk gathers its batches, and draws its steps' rotations, shifts
    # and zooms, up front and scans over them; its steps must still be
    # make_train_step's, key for key, in order.
    if not predraw:
        monkeypatch.setattr(train, "PREDRAW_EXAMPLES", 0)
    images, labels = blobs(100)
    config = TrainConfig(**{**SMALL, "chunk_steps": 8, "augment": augment})
    optimizer = train.make_optimizer(config, 100)
    start = train.init_state(config, 100)
    order = train.epoch_order(start.key, 0, 100, config.batch_size)

    runner = train.make_chunk_runner(config, optimizer, 100)
    chunked = runner(start, jnp.asarray(images), jnp.asarray(labels), order)

    step = jax.jit(train.make_train_step(config, optimizer))
    state = train.init_state(config, 100)
    idx = np.asarray(order).reshape(-1, config.batch_size)
    for rows in idx:  # 4 steps: the chunk stops at the epoch's end
        weights = (rows >= 0).astype(np.float32)
        rows = np.maximum(rows, 0)
        state = step(state, images[rows], labels[rows], weights)[0]

    assert int(chunked.step) == int(state.step) == 4
    chex.assert_trees_all_close(chunked.params, state.params, atol=1e-6)
    chex.assert_trees_all_close(chunked.stats, state.stats, rtol=1e-6)


def test_images_and_labels_of_different_lengths_are_refused_up_front():
    images, labels = blobs(64)
    config = TrainConfig(**SMALL, epochs=1)

    with pytest.raises(MnistJaxError, match="the training set: 64 images but"):
        fit(images, labels[:10], images, labels, config)
    with pytest.raises(MnistJaxError, match="the evaluation set: 64 images but"):
        fit(images, labels, images, labels[:3], config)
    params = model.init_params(jax.random.key(0), SMALL["sizes"])
    with pytest.raises(MnistJaxError, match="evaluate: 64 images but labels"):
        evaluate(params, images, labels[:5])


@pytest.mark.parametrize(
    "images, message",
    [
        (np.full((8, 784), 200.0, np.float32), "float pixels must lie in 0..1"),
        (np.full((8, 784), 300, np.int64), "integer pixels must lie in 0..255"),
        (np.full((8, 784), -1, np.int32), "integer pixels must lie in 0..255"),
    ],
)
def test_pixels_outside_their_range_are_refused(images, message):
    labels = np.zeros(8, np.int32)
    config = TrainConfig(**SMALL, epochs=1)

    with pytest.raises(MnistJaxError, match=f"the training set: {message}"):
        fit(images, labels, images[:0], labels[:0], config)
    with pytest.raises(MnistJaxError, match=f"predict: {message}"):
        train.predict(model.init_params(jax.random.key(0), SMALL["sizes"]), images)


def test_evaluate_refuses_an_empty_set():
    params = model.init_params(jax.random.key(0), SMALL["sizes"])
    with pytest.raises(MnistJaxError, match="no images to evaluate"):
        evaluate(params, np.zeros((0, 784), np.uint8), np.zeros(0, np.int32))
