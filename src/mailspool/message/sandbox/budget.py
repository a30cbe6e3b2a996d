"""What one render may do: loop iterations and calls, characters of text, time.

A template may come from someone who wants to hurt the service (a template registered
over HTTP), so each render gets a budget that the sandbox's hooks (environment.py)
spend: a step for each loop iteration and each call, characters for each piece of text
or list the template makes. The budget lives in a context variable for the duration of a render
(template.py, combined.py), so the hooks find it wherever the render runs: on the event
loop, on a thread of asyncio.to_thread, in a render process. Outside a render (Jinja
folds constant expressions while compiling) each operation gets a fresh budget, so the
limits of a single step still hold there.
"""

from __future__ import annotations

import time
from collections.abc import ItemsView, Iterator, KeysView, ValuesView
from contextvars import ContextVar, Token
from typing import Any

import jinja2
from jinja2.utils import Namespace

#: loop iterations plus calls of functions, methods and filters: a legitimate template
#: loops over at most thousands of items and calls a few filters for each
MAX_STEPS = 100_000
#: characters of text (and list items, see ITEM_CHARS) one render may make, its output
#: included: the message size limit (MAX_MESSAGE_BYTES, intake/builder.py), since a
#: message with a larger field could not be sent anyway
MAX_CHARS = 25 * 1024 * 1024
#: a normal render takes microseconds; this only stops one that loops on slow operations
MAX_SECONDS = 1.0
#: Python prints no integer of more than 4300 digits (about 14,000 bits) anyway
MAX_INT_BITS = 1 << 16
#: what an item of a list, tuple or dict counts: a pointer, or ", " and quotes when printed
ITEM_CHARS = 8
#: what a new small object (a piece of a split string) counts
OBJECT_CHARS = 64
#: the clock is read every this many steps
_CLOCK_EVERY = 8


class RenderLimitError(jinja2.TemplateRuntimeError):
    """A render went over one of its limits; it is reported like any template error."""

    def __init__(self, what: str) -> None:
        super().__init__(f"render limit exceeded: {what}")


class Budget:
    """What one render has spent so far: ``steps`` (loop iterations and calls) and
    ``chars`` (text made), against MAX_STEPS, MAX_CHARS and MAX_SECONDS. Made by
    :func:`begin` for each render, found by the hooks with :func:`current`."""

    __slots__ = ("chars", "check_at", "deadline", "steps")

    def __init__(self) -> None:
        self.steps = 0
        self.chars = 0
        self.check_at = 1  # the step at which to look at the limits (and the clock) again
        self.deadline = 0.0  # set at the first step: most renders take none

    def step(self) -> None:
        # the hot path is these two lines: filters repeat them inline (checks.py)
        self.steps += 1
        if self.steps >= self.check_at:
            self.checkpoint()

    def checkpoint(self) -> None:
        """The step limit and the clock, every few steps."""
        if self.steps > MAX_STEPS:
            raise RenderLimitError(f"more than {MAX_STEPS:,} loop iterations and calls")
        now = time.monotonic()
        if not self.deadline:
            self.deadline = now + MAX_SECONDS
        elif now >= self.deadline:
            raise RenderLimitError(f"took longer than {MAX_SECONDS:g} s")
        self.check_at = min(self.steps + _CLOCK_EVERY, MAX_STEPS + 1)

    def room(self) -> int:
        return MAX_CHARS - self.chars

    def need(self, chars: int) -> None:
        """Before an operation that would make about ``chars`` characters."""
        if chars > MAX_CHARS - self.chars:
            raise RenderLimitError(f"more than {MAX_CHARS:,} characters of text")

    def charge(self, chars: int) -> None:
        """After an operation that made ``chars`` characters (or before joining them)."""
        self.chars += chars
        if self.chars > MAX_CHARS:
            self.over()

    def over(self) -> None:
        raise RenderLimitError(f"more than {MAX_CHARS:,} characters of text")


_current: ContextVar[Budget | None] = ContextVar("mailspool_render_budget", default=None)
#: the current budget, or None outside a render
running = _current.get


def current() -> Budget:
    budget = _current.get()
    return Budget() if budget is None else budget


def begin() -> Token[Budget | None] | None:
    """A budget for the render about to start, unless one is running already: then it
    covers this render too (the per-field renders of one row share one)."""
    if _current.get() is not None:
        return None
    return _current.set(Budget())


def end(token: Token[Budget | None] | None) -> None:
    if token is not None:
        _current.reset(token)


_SEQUENCES = (list, tuple, set, frozenset, KeysView, ValuesView, ItemsView)


def text_size(value: Any, room: int) -> int:
    """About how many characters ``str(value)`` has, counting ITEM_CHARS at least for
    each item of a container: a list holding one long string many times is short in
    memory but not when printed. Counting stops once past ``room``, and walks nested
    containers without recursion."""
    if isinstance(value, str):
        return len(value)
    total = 0
    stack: list[Iterator[Any]] = [iter((value,))]
    while stack:
        for item in stack[-1]:
            if total > room:
                return total
            total += ITEM_CHARS
            if isinstance(item, (str, bytes)):
                total += len(item)
            elif isinstance(item, int):
                total += item.bit_length() // 2  # digits, with room for separators
            elif isinstance(item, float):
                total += 24
            elif isinstance(item, dict):
                stack.append(iter(item.items()))
                break
            elif isinstance(item, _SEQUENCES):
                stack.append(iter(item))
                break
            elif isinstance(item, Namespace):
                # its repr shows its attributes
                stack.append(iter(getattr(item, "_Namespace__attrs", {}).items()))
                break
        else:
            stack.pop()
    return total
