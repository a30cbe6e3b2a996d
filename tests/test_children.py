"""A child started by start_child ignores Ctrl-C and SIGTERM from its first instruction:
a signal to the process group while it is still starting up kills nothing and prints
no traceback (the parent stops its children itself)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

from mailspool.children import start_child


def _wait(seconds: float) -> None:
    time.sleep(seconds)


def test_a_child_starting_up_ignores_the_terminal_signals() -> None:
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=_wait, args=(0.5,))
    before = signal.getsignal(signal.SIGINT)
    start_child(proc)
    assert signal.getsignal(signal.SIGINT) is before  # the parent's own handler is back
    assert proc.pid is not None
    # at once: the child is still in the interpreter's start-up, before any code of ours
    os.kill(proc.pid, signal.SIGINT)
    os.kill(proc.pid, signal.SIGTERM)
    proc.join(30)
    assert proc.exitcode == 0


def test_without_it_the_same_signal_kills_the_child() -> None:
    """The check above can fail: a child started plainly dies of the same signal."""
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=_wait, args=(5,))
    proc.start()
    assert proc.pid is not None
    os.kill(proc.pid, signal.SIGTERM)
    proc.join(30)
    assert proc.exitcode == -signal.SIGTERM
