"""How much text an operation of a template would make, worked out before it runs.

Each check raises RenderLimitError (budget.py) when the operation would go over what is
left of the render's budget; the operation's actual result is counted after it (the
estimates are upper bounds within a small factor, not exact). environment.py calls
these for operators, method calls and str.format fields; the filters are wrapped here.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sized
from itertools import chain
from typing import Any

from jinja2.filters import FILTERS

from mailspool.message.sandbox.budget import (
    ITEM_CHARS,
    MAX_CHARS,
    MAX_INT_BITS,
    OBJECT_CHARS,
    Budget,
    RenderLimitError,
    current,
    running,
    text_size,
)

Args = tuple[Any, ...]
Kwargs = dict[str, Any]
#: (budget, receiver of a method or value of a filter, the other positional arguments,
#: keyword arguments) -> None, or what replaces the positional arguments of a method (the
#: value and the other arguments of a filter): a check that reads an iterable to size
#: it hands on what it read
Check = Callable[[Budget, Any, Args, Kwargs], Args | None]

_PERCENT = re.compile(r"%(?:\(([^)]*)\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?(.?)", re.S)
_DIGITS = re.compile(r"\d+")
# what str.split() and str.splitlines() split on (every c with c.isspace(), and the line
# boundaries of str.splitlines)
_WHITESPACE = tuple(
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_LINE_BREAKS = tuple("\n\x0b\x0c\r\x1c\x1d\x1e\x85\u2028\u2029")


def _arg(args: Args, kwargs: Kwargs, index: int, name: str, default: Any) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


def _count(n: Any) -> int:
    """A width, count or length argument: another type fails in the operation itself."""
    return abs(n) if isinstance(n, int) else 0


def _size(value: Any, budget: Budget) -> int:
    return len(value) if isinstance(value, (str, bytes)) else text_size(value, budget.room())


def _sizes(items: list[Any], budget: Budget) -> int:
    if all(isinstance(item, str) for item in items):  # mostly
        return sum(map(len, items))
    return sum(_size(item, budget) for item in items)


def check_mul(budget: Budget, left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise RenderLimitError(f"an integer of more than {MAX_INT_BITS:,} bits")
        return
    seq, n = (left, right) if isinstance(right, int) else (right, left)
    if not isinstance(n, int) or n <= 0:
        return
    if isinstance(seq, (str, bytes)):
        budget.need(len(seq) * n)
    elif isinstance(seq, (list, tuple)):
        budget.need(ITEM_CHARS * len(seq) * n)


def check_pow(left: Any, right: Any) -> None:
    if not (isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1):
        return
    if left.bit_length() * right > MAX_INT_BITS:
        raise RenderLimitError(f"an integer of more than {MAX_INT_BITS:,} bits")


def check_add(budget: Budget, left: Any, right: Any) -> None:
    if isinstance(left, (str, bytes)) and isinstance(right, (str, bytes)):
        budget.need(len(left) + len(right))
    elif isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
        budget.need(ITEM_CHARS * (len(left) + len(right)))


def percent_size(budget: Budget, fmt: str | bytes, args: Any) -> int:
    """``fmt % args``: the format, each conversion's width and precision (also those
    given as ``*``), and each value as printed."""
    if isinstance(fmt, bytes):
        fmt = fmt.decode("latin-1")
    positional = args if isinstance(args, tuple) else (args,)
    total, i = len(fmt), 0
    for m in _PERCENT.finditer(fmt):
        key, width, precision, conversion = m.groups()
        if conversion == "%":
            continue
        for spec in (width, precision):
            if spec == "*":
                total += _count(positional[i] if i < len(positional) else 0)
                i += 1
            elif spec:
                total += int(spec)
        if key is not None:
            value = args.get(key) if isinstance(args, Mapping) else None
        else:
            value = positional[i] if i < len(positional) else None
            i += 1
        total += _size(value, budget)
        if total > budget.room():
            break
    return total


def field_size(budget: Budget, value: Any, spec: str) -> int:
    """A str.format field: every number in its spec (width, precision) and the value."""
    return sum(map(int, _DIGITS.findall(spec))) + _size(value, budget)


# -- methods of str, bytes and int -----------------------------------------------------


def _width(budget: Budget, s: Any, args: Args, kwargs: Kwargs) -> Args | None:
    budget.need(max(_count(_arg(args, kwargs, 0, "width", 0)), len(s)))
    return None


def _expandtabs(budget: Budget, s: Any, args: Args, kwargs: Kwargs) -> Args | None:
    tabs = s.count("\t" if isinstance(s, str) else b"\t")
    budget.need(len(s) + tabs * _count(_arg(args, kwargs, 0, "tabsize", 8)))
    return None


def replace_size(s: Any, old: Any, new: Any, count: Any) -> int:
    if not all(isinstance(x, (str, bytes)) for x in (s, old, new)):
        return 0  # the operation fails on its own (a variable is undefined, say)
    found = s.count(old) if old else len(s) + 1
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    return len(s) + found * max(0, len(new) - len(old or ""))


def _replace(budget: Budget, s: Any, args: Args, kwargs: Kwargs) -> Args | None:
    old, new = _arg(args, kwargs, 0, "old", ""), _arg(args, kwargs, 1, "new", "")
    budget.need(replace_size(s, old, new, _arg(args, kwargs, 2, "count", -1)))
    return None


def _join(budget: Budget, sep: Any, args: Args, kwargs: Kwargs) -> Args | None:
    items = list(_arg(args, kwargs, 0, "iterable", ()))  # a generator is read once, here
    budget.need(len(sep) * len(items) + _sizes(items, budget))
    return (items, *args[1:])


def _translate(budget: Budget, s: Any, args: Args, kwargs: Kwargs) -> Args | None:
    table = _arg(args, kwargs, 0, "table", None)
    longest = 1
    if isinstance(table, Mapping):
        longest = max((len(v) for v in table.values() if isinstance(v, str)), default=1)
    budget.need(len(s) * longest)
    return None


def _split(budget: Budget, s: Any, args: Args, kwargs: Kwargs) -> Args | None:
    sep, limit = _arg(args, kwargs, 0, "sep", None), _arg(args, kwargs, 1, "maxsplit", -1)
    if isinstance(limit, int) and limit >= 0:
        pieces = limit + 1
    elif isinstance(sep, (str, bytes)):
        pieces = s.count(sep) + 1 if sep else 1
    elif isinstance(s, str):
        pieces = sum(map(s.count, _WHITESPACE)) + 1
    else:
        pieces = len(s) + 1
    budget.need(len(s) + OBJECT_CHARS * pieces)
    return None


def _splitlines(budget: Budget, s: Any, args: Args, kwargs: Kwargs) -> Args | None:
    breaks = sum(map(s.count, _LINE_BREAKS)) if isinstance(s, str) else len(s)
    budget.need(len(s) + OBJECT_CHARS * (breaks + 1))
    return None


def _to_bytes(budget: Budget, n: Any, args: Args, kwargs: Kwargs) -> Args | None:
    budget.need(_count(_arg(args, kwargs, 0, "length", 1)))
    return None


#: method name -> check, for receivers of type str or bytes (and int for to_bytes)
METHOD_CHECKS: dict[str, Check] = {
    "center": _width, "ljust": _width, "rjust": _width, "zfill": _width,
    "expandtabs": _expandtabs, "replace": _replace, "join": _join,
    "translate": _translate, "split": _split, "rsplit": _split,
    "splitlines": _splitlines, "to_bytes": _to_bytes,
}  # fmt: skip


def lipsum_size(args: Args, kwargs: Kwargs) -> int:
    """The lipsum() global: n paragraphs of at most max words."""
    params = dict(zip(("n", "html", "min", "max"), args, strict=False)) | kwargs
    return 16 * _count(params.get("n", 5)) * _count(params.get("max", 100))


def result_size(value: Any) -> int:
    """What a new result counts: its characters, or its items."""
    if isinstance(value, (str, bytes)):
        return len(value)
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        return ITEM_CHARS * len(value)
    return 0


# -- filters ---------------------------------------------------------------------------


def _center(budget: Budget, value: Any, args: Args, kwargs: Kwargs) -> Args | None:
    budget.need(max(_count(_arg(args, kwargs, 0, "width", 80)), _size(value, budget)))
    return None


def _indent(budget: Budget, value: Any, args: Args, kwargs: Kwargs) -> Args | None:
    width = _arg(args, kwargs, 0, "width", 4)
    width = len(width) if isinstance(width, str) else _count(width)
    lines = value.count("\n") + 1 if isinstance(value, str) else 1
    budget.need(_size(value, budget) + lines * width)
    return None


def _wordwrap(budget: Budget, value: Any, args: Args, kwargs: Kwargs) -> Args | None:
    wrapstring = _arg(args, kwargs, 2, "wrapstring", None)
    per_break = len(wrapstring) if isinstance(wrapstring, str) else 2
    budget.need(_size(value, budget) * (1 + per_break))  # at worst a break after each char
    return None


def _format(budget: Budget, value: Any, args: Args, kwargs: Kwargs) -> Args | None:
    if isinstance(value, str):
        budget.need(percent_size(budget, value, kwargs or args))
    return None


def _replace_filter(budget: Budget, value: Any, args: Args, kwargs: Kwargs) -> Args | None:
    old, new = _arg(args, kwargs, 0, "old", ""), _arg(args, kwargs, 1, "new", "")
    count = _arg(args, kwargs, 2, "count", None)
    budget.need(replace_size(value, old, new, -1 if count is None else count))
    return None


def _join_filter(budget: Budget, value: Any, args: Args, kwargs: Kwargs) -> Args | None:
    items = list(value)  # a generator is read once, here; the filter gets the list
    sep = _arg(args, kwargs, 0, "d", "")
    budget.need(_size(sep, budget) * len(items) + _sizes(items, budget))
    return (items, *args)


def _fill(budget: Budget, value: Any, args: Args, kwargs: Kwargs) -> Args | None:
    """batch and slice: a count of items or slices, each filled up with fill_with."""
    count = _arg(args, kwargs, 0, "linecount", kwargs.get("slices", 0))
    budget.need(OBJECT_CHARS * _count(count))
    return None


def _tojson(budget: Budget, value: Any, args: Args, kwargs: Kwargs) -> Args | None:
    indent = _arg(args, kwargs, 0, "indent", None)
    per_item = len(indent) if isinstance(indent, str) else _count(indent)
    budget.need(text_size(value, budget.room()) * (1 + per_item))
    return None


def _urlize(budget: Budget, value: Any, args: Args, kwargs: Kwargs) -> Args | None:
    extra = sum(
        len(v) for v in (kwargs.get("target"), kwargs.get("rel"), *args[2:4])
        if isinstance(v, str)
    )  # fmt: skip
    budget.need(_size(value, budget) * (1 + extra))  # at worst a link every other char
    return None


def _materialize(budget: Budget, value: Any, args: Args, kwargs: Kwargs) -> Args | None:
    """A filter that makes a list of its value's items."""
    if isinstance(value, Sized):
        budget.need(ITEM_CHARS * len(value))
    return None


def _reverse(budget: Budget, value: Any, args: Args, kwargs: Kwargs) -> Args | None:
    """A string reversed is a string; anything else, a list."""
    if isinstance(value, Sized):
        budget.need(len(value) if isinstance(value, str) else ITEM_CHARS * len(value))
    return None


def _sum(f: Callable[..., Any]) -> Callable[..., Any]:
    """Lists added one after the other take time growing with the square of their
    number: chained instead, once, into one list of checked size."""

    @functools.wraps(f)
    def sum_(env: Any, iterable: Iterable[Any], attribute: Any = None, start: Any = 0) -> Any:
        if attribute is not None or not isinstance(start, (list, tuple)):
            return f(env, iterable, attribute, start)
        items = list(iterable)
        if not all(type(i) is type(start) for i in items):
            return f(env, items, attribute, start)
        budget = current()
        budget.need(ITEM_CHARS * (len(start) + sum(map(len, items))))
        return type(start)(chain(start, *items))

    return sum_


_FILTER_CHECKS: dict[str, Check] = {
    "center": _center, "indent": _indent, "wordwrap": _wordwrap, "format": _format,
    "replace": _replace_filter, "join": _join_filter, "batch": _fill, "slice": _fill,
    "tojson": _tojson, "urlize": _urlize, "reverse": _reverse,
    **dict.fromkeys(("list", "sort", "dictsort", "groupby", "unique"), _materialize),
}  # fmt: skip
#: filters that print their value: a value that is not text is sized first (see text_size)
_PRINTING = frozenset((
    "capitalize", "e", "escape", "forceescape", "lower", "pprint", "safe", "string",
    "striptags", "title", "trim", "truncate", "upper", "urlencode", "wordcount", "xmlattr",
    "mailspool_phrase", "mailspool_qcontent",
))  # fmt: skip


#: filters whose result is (a part of) their input, not something new
_REFERENCES = frozenset(("attr", "d", "default", "first", "last", "random", "min", "max"))


def checked_filter(name: str, f: Callable[..., Any]) -> Callable[..., Any]:
    """The filter, counting a step, checked first where its result could be large, and
    its result counted. Filters are called on the hot path: kept lean."""
    if name == "sum":
        f = _sum(f)
    check = _FILTER_CHECKS.get(name)
    prints = name in _PRINTING
    charges = name not in _REFERENCES
    # the value comes after the context, eval context or environment the filter asks for
    at = 1 if getattr(f, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(f)
    def filter_(*args: Any, **kwargs: Any) -> Any:
        budget = running() or Budget()
        budget.steps += 1  # Budget.step, inline
        if budget.steps >= budget.check_at:
            budget.checkpoint()
        if prints and len(args) > at and args[at].__class__ is not str:
            budget.need(text_size(args[at], budget.room()))
        if check is not None and len(args) > at:
            replaced = check(budget, args[at], args[at + 1 :], kwargs)
            if replaced is not None:
                args = (*args[:at], *replaced)
        result = f(*args, **kwargs)
        if charges:  # Budget.charge, inline
            budget.chars += len(result) if result.__class__ is str else result_size(result)
            if budget.chars > MAX_CHARS:
                budget.over()
        return result

    return filter_


def checked_filters(extra: Mapping[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    return {name: checked_filter(name, f) for name, f in {**FILTERS, **extra}.items()}
