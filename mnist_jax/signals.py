"""Stopping a run cleanly on Ctrl-C (SIGINT) or SIGTERM.

``stop_requested()`` is a context manager for the command line: inside it,
the first SIGINT or SIGTERM only sets a flag, which the training loop reads
as ``should_stop`` between chunks of steps. The steps already dispatched in
the current chunk (``TrainConfig.chunk_steps``, 64 by default) finish, then
the run checkpoints and returns. A second signal raises
``KeyboardInterrupt`` at once, for a user who will not wait; the checkpoint
on disk is then the last one written, since writes are atomic.

On leaving the block the previous handlers are restored. Outside the main
thread Python cannot install handlers, so there the flag never turns.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopFlag:
    """A flag that signal handlers set; calling it says whether one arrived.

    armed: True, the first signal only sets the flag and a second interrupts.
    A flag made unarmed interrupts at once (``KeyboardInterrupt``) until
    ``arm()`` is called, which ``train.fit`` does when its steps begin:
    before that there is nothing to save, and loading or downloading data
    should not wait for a chunk that has not started.
    """

    def __init__(self, armed: bool = True) -> None:
        self.signum: int | None = None
        self.armed = armed

    def __call__(self) -> bool:
        return self.signum is not None

    def arm(self) -> None:
        """From now on the first signal only asks the run to stop."""
        self.armed = True

    @property
    def name(self) -> str:
        """Returns the signal's name, e.g. ``"SIGINT"``, or ``""`` if none came."""
        return "" if self.signum is None else signal.Signals(self.signum).name

    def handle(self, signum: int, frame: FrameType | None) -> None:
        """The handler: the first signal sets the flag, a second one interrupts."""
        if self.signum is not None or not self.armed:
            self.signum = signum
            raise KeyboardInterrupt
        self.signum = signum
        log.info("got %s; stopping after the current chunk of steps", self.name)


@contextlib.contextmanager
def stop_requested(
    signums: tuple[int, ...] = STOP_SIGNALS, flag: StopFlag | None = None
) -> Iterator[StopFlag]:
    """Yields a ``StopFlag`` that SIGINT or SIGTERM sets inside the block.

    flag: one to carry on (``interrupts_noted``'s): if a signal came already,
    the run stops after its first chunk and another signal interrupts.
    """
    flag = StopFlag() if flag is None else flag
    with _handlers(signums, flag.handle):
        yield flag


@contextlib.contextmanager
def interrupts_noted(
    signums: tuple[int, ...] = STOP_SIGNALS, raising: bool = True
) -> Iterator[StopFlag]:
    """Yields a ``StopFlag`` noting SIGINT or SIGTERM, which still interrupt.

    Inside the block either signal raises ``KeyboardInterrupt`` as Ctrl-C
    does, and also sets the flag. Python drops an exception raised inside a
    garbage-collection callback (JAX runs one), so a signal that lands there
    is lost but for the flag, which the command line reads afterwards.
    raising: False only notes the signal, for code that must not be
    interrupted halfway (native extensions loading).
    """
    flag = StopFlag(armed=False)

    def note(signum: int, frame: FrameType | None) -> None:
        flag.signum = signum
        if raising:
            raise KeyboardInterrupt

    def quiet(unraisable: Any) -> None:
        # Python would print the dropped KeyboardInterrupt with a traceback.
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            previous_hook(unraisable)

    previous_hook = sys.unraisablehook
    sys.unraisablehook = quiet
    try:
        with _handlers(signums, note):
            yield flag
    finally:
        sys.unraisablehook = previous_hook


@contextlib.contextmanager
def _handlers(signums: tuple[int, ...], handler) -> Iterator[None]:
    """Installs ``handler`` for ``signums`` inside the block, then restores."""
    if threading.current_thread() is not threading.main_thread():
        log.debug("not the main thread: signals keep their handlers")
        yield
        return

    previous = {signum: signal.getsignal(signum) for signum in signums}
    for signum in signums:
        signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            # None: a handler set outside Python, which cannot be put back.
            signal.signal(signum, signal.SIG_DFL if old is None else old)
