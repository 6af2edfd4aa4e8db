"""Stopping a long run cleanly: SIGTERM is handled like Ctrl-C, and neither is lost.

``timeout``, SLURM, ``docker stop``, systemd and torchrun stop a process with SIGTERM;
Python's default for it is to die on the spot. Inside :func:`terminate_as_interrupt`
SIGTERM raises :class:`KeyboardInterrupt` instead, so the code that saves a checkpoint
on Ctrl-C runs for both.

A KeyboardInterrupt raised while Python runs a finaliser or a weak-reference callback
(matplotlib's transforms have them) is printed as "Exception ignored" and dropped: the
run would go on as if the signal had never come. :func:`interrupts_noted` also writes
the signal down, so a loop that asks at each step raises it again.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt; the handler before is put
    back after. Only the main thread may set signal handlers: elsewhere (a thread of a
    GUI) the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Within the block, Ctrl-C and SIGTERM are held and raised as KeyboardInterrupt
    when it ends, so that what the block does happens whole or not at all (a training
    step's update and the counters a checkpoint records with it). In threads other than
    the main one (where no signal arrives) the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    old = {s: signal.signal(s, lambda signum, frame: held.append(signum))
           for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if held:
            raise KeyboardInterrupt(f"signal {held[0]}")


class Noted:
    """The first Ctrl-C or SIGTERM seen inside :func:`interrupts_noted`, if any."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def raise_if_any(self) -> None:
        """Raise the noted signal as KeyboardInterrupt (again, if it was dropped)."""
        if self.signum is not None:
            raise KeyboardInterrupt(f"signal {self.signum}")


@contextmanager
def interrupts_noted() -> Iterator[Noted]:
    """Within the block, Ctrl-C and SIGTERM raise KeyboardInterrupt and are written
    down in the :class:`Noted` it yields. Ctrl-C keeps an ignored disposition (a job
    started in the background). Outside the main thread nothing is installed."""
    noted = Noted()
    if threading.current_thread() is not threading.main_thread():
        yield noted
        return

    def note(signum: int, frame: Any) -> None:
        if noted.signum is None:
            noted.signum = signum
        raise KeyboardInterrupt(f"signal {signum}")

    wanted = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        wanted.append(signal.SIGINT)
    old = {s: signal.signal(s, note) for s in wanted}
    try:
        yield noted
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


__all__ = ["Noted", "interrupts_deferred", "interrupts_noted", "terminate_as_interrupt"]
