"""Child processes started deaf to the terminal's signals.

Ctrl-C and SIGTERM reach the whole process group; the parent handles them and stops its
children in order. A spawned child only starts ignoring them once its own code runs,
after the interpreter's start-up and imports: a signal in that window would kill it
with a ``KeyboardInterrupt`` traceback. Started with the signals ignored, the child
inherits that disposition through exec (Python leaves an ignored SIGINT ignored), so
there is no such window; the parent's own handlers are back as soon as it has started.
"""

from __future__ import annotations

import signal
import threading
from multiprocessing.process import BaseProcess

__all__ = ["start_child"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def start_child(process: BaseProcess) -> None:
    """``process.start()`` with SIGINT and SIGTERM ignored while it starts (in the main
    thread only; elsewhere the signals cannot be changed, and it just starts)."""
    if threading.current_thread() is not threading.main_thread():
        process.start()
        return
    old = {s: signal.signal(s, signal.SIG_IGN) for s in _SIGNALS}
    try:
        process.start()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
