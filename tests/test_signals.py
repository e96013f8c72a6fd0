"""Signals: the first SIGINT or SIGTERM asks to stop, the old handlers come back."""

from __future__ import annotations

import signal
import threading

import pytest

from mnist_jax.signals import StopFlag, stop_requested


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_in_the_block_sets_the_flag_instead_of_stopping(signum):
    with stop_requested() as stop:
        assert not stop()
        signal.raise_signal(signum)

        assert stop()
        assert stop.name == signal.Signals(signum).name


def test_the_previous_handlers_come_back_after_the_block():
    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        with stop_requested():
            assert signal.getsignal(signal.SIGTERM) is not mine
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_second_signal_interrupts_at_once():
    with stop_requested() as stop, pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
        assert stop()
        signal.raise_signal(signal.SIGTERM)


def test_outside_the_main_thread_the_handlers_are_left_alone():
    seen = []

    def in_thread():
        with stop_requested() as stop:
            seen.append((stop(), signal.getsignal(signal.SIGINT)))

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()

    assert seen == [(False, signal.default_int_handler)]


def test_an_unarmed_flag_interrupts_at_once_until_fit_arms_it():
    import numpy as np

    from mnist_jax.train import TrainConfig, fit

    flag = StopFlag(armed=False)
    with stop_requested(flag=flag), pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)  # loading data: nothing to save yet
    assert flag.name == "SIGINT"

    # A signal that came before the steps (say, dropped by Python) stops fit
    # before its first chunk, and fit arms the flag.
    images = np.zeros((8, 784), np.uint8)
    labels = np.zeros(8, np.int32)
    config = TrainConfig(sizes=(784, 4, 10), batch_size=4, epochs=1, augment=None)
    state, history = fit(images, labels, images, labels, config, should_stop=flag)
    assert flag.armed and int(state.step) == 0 and history == []

    flag = StopFlag(armed=False)
    flag.arm()
    with stop_requested(flag=flag):
        signal.raise_signal(signal.SIGINT)  # armed: only noted
    assert flag()
