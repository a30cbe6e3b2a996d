"""One Jinja render per row for all of a template's fields.

Each header value and the body are compiled as templates of their own (template.py): that
is what lets a value which renders to a newline be caught instead of becoming a new
header. But every render has a fixed cost of several microseconds, most of a row's
rendering time. The combined template joins the fields' sources with NUL between them,
each in a scope of its own (``{% with %}``, so a ``{% set %}`` in one field stays there)
and HTML fields under ``{% autoescape true %}``. NUL is never valid in a field, so the
output splits back into the fields; anything unexpected (an error, a NUL in a value)
falls back to the per-field renders, which report it with the field's name.
"""

from __future__ import annotations

from typing import Any

import jinja2

from mailspool.message.sandbox.budget import begin, end

SEP = "\x00"
# statements that behave the same inside a {% with %} scope; a field using any other
# (block, extends, macro, import, include, call, filter, autoescape) is rendered alone
_SCOPED = frozenset(
    ("if", "elif", "else", "endif", "for", "endfor", "set", "endset", "with", "endwith")
)


def _statements(env: jinja2.Environment, source: str) -> set[str]:
    names: set[str] = set()
    after_begin = False
    for _, token, value in env.lex(source):
        if token == "whitespace":
            continue
        if after_begin and token == "name":
            names.add(value)
        after_begin = token == "block_begin"
    return names


def combine(env: jinja2.Environment, parts: list[tuple[str, bool]]) -> jinja2.Template | None:
    """A template rendering every (source, is_html) part, or None where that would not
    behave as the parts rendered one by one."""
    pieces = []
    for source, html in parts:
        if SEP in source or not _statements(env, source) <= _SCOPED:
            return None
        scoped = "{% autoescape true %}" + source + "{% endautoescape %}" if html else source
        pieces.append("{% with %}" + scoped + "{% endwith %}")
    try:
        return env.from_string(SEP.join(pieces))
    except (jinja2.TemplateError, RecursionError):  # the fields compiled one by one
        return None


def render_combined(tpl: jinja2.Template, ctx: dict[str, Any], parts: int) -> list[str] | None:
    """Each part's output, or None when the per-field renders must decide."""
    token = begin()  # one budget for the whole render (budget.py)
    try:
        # ctx already holds the environment's globals (template.template_context)
        out: str = tpl.environment.concat(tpl.root_render_func(tpl.new_context(ctx, shared=True)))
    except Exception:  # the per-field render raises it again, naming the field
        return None
    finally:
        end(token)
    fields = out.split(SEP)
    return fields if len(fields) == parts else None
