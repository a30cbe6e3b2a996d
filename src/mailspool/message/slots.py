"""Address headers in templates: every value a row puts into one is data, never syntax.

Pure functions; the template compiler (template.py) rewrites each address header's
source with :func:`protect_address_header`, and registers the filters it uses. Where an
expression stands decides what its value may be:

- in a quoted string (``"{{ Name }}" <...>``): the inside of that string, its quotes
  and backslashes escaped;
- right before ``<addr>`` (``{{ Name }} <...>``): a display name, quoted when it holds
  characters that mean something in an address ("Smith, John" must not split the list,
  nor "Eve <eve@example.net>, Bob" add a recipient);
- in a comment (``addr ({{ Name }})``): comment text, without parentheses, backslashes
  or quotes;
- anywhere else (``{{ Email }}``, ``<{{ Email }}>``, ``{{ user }}@example.com``): part
  of one address slot, so it may hold at most one element of the list. The recipients
  of a message are then exactly the template's address slots.

A template that means a value to be a whole list says so: ``{{ Team | address_list }}``
(a JSON array, or text with commas); each of its items must still be one address.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from mailspool.errors import RejectedRow
from mailspool.message.addresses import single_element

_EXPR = re.compile(r"\{\{(-?)((?:(?!\}\}).)*?)(-?)\}\}", re.DOTALL)  # {{ expr }}, {{- x -}}
_BEFORE_ANGLE = re.compile(r"\s*<")
_STATEMENT = re.compile(r"\{%.*?%\}|\{#.*?#\}", re.DOTALL)  # not text of the header
_PHRASE_SPECIALS = frozenset('()<>[]:;@\\,."')
_COMMENT_SPECIALS = frozenset('()\\"')


def escape_qcontent(value: object) -> str:
    """The inside of a quoted string: backslashes and quotes escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"')


def quote_phrase(value: object) -> str:
    """A display name, quoted when it holds characters that mean something in an address."""
    text = str(value)
    if _PHRASE_SPECIALS.isdisjoint(text):
        return text
    return f'"{escape_qcontent(text)}"'


def comment_text(value: object, header: str) -> str:
    text = str(value)
    if not _COMMENT_SPECIALS.isdisjoint(text):
        raise RejectedRow(header, f"a value in a comment holds ( ) \\ or a quote: {text!r}")
    return text


def address_slot(value: object, header: str) -> str:
    """A value filling (part of) one address: at most one element of the list."""
    text = str(value)
    if not single_element(text):
        raise RejectedRow(
            header, f"a value in an address slot must hold one address at most: {text!r}"
        )
    return text


def address_list(value: object) -> str:
    """A value the template marks as a list of addresses: a list's items joined (text is
    a list already, parsed with the rest of the header)."""
    if not isinstance(value, list | tuple):
        return str(value)
    items = [str(v) for v in value]
    for item in items:
        if not single_element(item):
            raise ValueError(f"each item of an address_list must be one address: {item!r}")
    return ", ".join(items)


#: filter name -> function, for the template environment
FILTERS: dict[str, Callable[..., str]] = {
    "mailspool_phrase": quote_phrase,
    "mailspool_qcontent": escape_qcontent,
    "mailspool_comment": comment_text,
    "mailspool_slot": address_slot,
    "address_list": address_list,
}
_LIST_EXPR = re.compile(r"\|\s*address_list\s*$")


class _Place:
    """Where the literal text of an address header leaves the next expression: in a
    quoted string, in a comment, or neither."""

    def __init__(self) -> None:
        self.quoted = self.escaped = False
        self.depth = 0  # comment nesting

    def feed(self, literal: str) -> None:
        for ch in _STATEMENT.sub("", literal):
            if self.escaped:
                self.escaped = False
            elif ch == "\\":
                self.escaped = True
            elif self.quoted:
                self.quoted = ch != '"'
            elif ch == '"':
                self.quoted = True
            elif ch == "(":
                self.depth += 1
            elif ch == ")":
                self.depth = max(0, self.depth - 1)


def protect_address_header(source: str, header: str) -> str:
    """Rewrite an address header's template so that each expression's value is data of
    the kind its place asks for (see the module docstring). ``header`` names the field in
    errors; it is a header name, which holds no quote."""
    out: list[str] = []
    place = _Place()
    pos = 0
    for m in _EXPR.finditer(source):
        out.append(source[pos : m.start()])
        place.feed(source[pos : m.start()])
        lead, expr, trail = m.groups()
        if place.quoted:
            wrapped = f"({expr}) | mailspool_qcontent"
        elif place.depth:
            wrapped = f"({expr}) | mailspool_comment({header!r})"
        elif _LIST_EXPR.search(expr):
            wrapped = expr  # the template says this slot is a list
        elif _BEFORE_ANGLE.match(source, m.end()):
            wrapped = f"({expr}) | mailspool_phrase"
        else:
            wrapped = f"({expr}) | mailspool_slot({header!r})"
        out.append(f"{{{{{lead} {wrapped} {trail}}}}}")
        pos = m.end()
    out.append(source[pos:])
    return "".join(out)
