"""Signals: the first SIGINT or SIGTERM asks to stop, the old handlers come back."""

from __future__ import annotations

import signal
import threading

import pytest

from mnist_jax.signals import stop_requested


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
