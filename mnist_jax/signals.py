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
import threading
from collections.abc import Iterator
from types import FrameType

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopFlag:
    """A flag that signal handlers set; calling it says whether one arrived."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        """Returns the signal's name, e.g. ``"SIGINT"``, or ``""`` if none came."""
        return "" if self.signum is None else signal.Signals(self.signum).name

    def handle(self, signum: int, frame: FrameType | None) -> None:
        """The handler: the first signal sets the flag, a second one interrupts."""
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        log.info("got %s; stopping after the current chunk of steps", self.name)


@contextlib.contextmanager
def stop_requested(
    signums: tuple[int, ...] = STOP_SIGNALS,
) -> Iterator[StopFlag]:
    """Yields a ``StopFlag`` that SIGINT or SIGTERM sets inside the block."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        log.debug("not the main thread: signals keep their handlers")
        yield flag
        return

    previous = {signum: signal.getsignal(signum) for signum in signums}
    for signum in signums:
        signal.signal(signum, flag.handle)
    try:
        yield flag
    finally:
        for signum, handler in previous.items():
            # None: a handler set outside Python, which cannot be put back.
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
