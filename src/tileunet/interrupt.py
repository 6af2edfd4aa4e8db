"""Stopping a long run cleanly: SIGTERM is handled like Ctrl-C.

``timeout``, SLURM, ``docker stop``, systemd and torchrun stop a process with SIGTERM;
Python's default for it is to die on the spot. Inside :func:`terminate_as_interrupt`
SIGTERM raises :class:`KeyboardInterrupt` instead, so the code that saves a checkpoint
on Ctrl-C runs for both.
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


__all__ = ["interrupts_deferred", "terminate_as_interrupt"]
