"""Templates: a header block (``Name: value`` lines up to the first blank line) and a
body (docs/cli.md, "Template files"). No I/O besides reading template files.

Each header value and the body are compiled separately so that a value which renders to
a newline is caught instead of becoming a new header; all of them are also compiled as
one template (combined.py) so that a row costs one render.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from mailspool.errors import RejectedRow, TemplateError
from mailspool.message.combined import combine, render_combined
from mailspool.message.headers import is_protected, valid_name
from mailspool.message.sandbox.budget import begin, end
from mailspool.message.sandbox.checks import checked_filters
from mailspool.message.sandbox.environment import Sandbox
from mailspool.message.slots import FILTERS, protect_address_header

_HEADER_LINE = re.compile(r"^([A-Za-z][A-Za-z0-9-]*)[ \t]*:[ \t]?(.*)$")
ADDRESS_FIELDS = ("from", "to", "cc", "bcc", "reply-to")
#: headers a message has once at most (RFC 5322 section 3.6)
SINGLE = frozenset((*ADDRESS_FIELDS, "subject", "content-type"))


_FILTERS = checked_filters(FILTERS)


def make_environment(*, html: bool) -> jinja2.Environment:
    """Every template is compiled in the sandbox (sandbox/environment.py), whoever
    wrote it: a template file is often someone else's work too."""
    env = Sandbox(
        undefined=jinja2.StrictUndefined,
        autoescape=html,
        keep_trailing_newline=True,
        trim_blocks=False,
    )
    env.filters.update(_FILTERS)
    return env


@dataclass(slots=True, kw_only=True)
class Template:
    """A parsed template (build one with :meth:`parse` or :meth:`load`): each header
    value, Attachment line, the body and the HTML alternative compiled on its own, and
    all of them as one template (combined.py) so that a row costs one render.

    ``headers`` are (name, compiled value) pairs in template order, a plain ``str``
    where the value has no Jinja syntax; ``attachments`` the Attachment lines (paths
    under the attachment directory); ``body`` the text or, when ``body_is_html`` (the
    template's Content-Type says text/html), the HTML body; ``html`` the separate HTML
    template, if any. ``source_text``, ``html_text`` and ``names`` (the file names in
    error reports) are what parse() was given, so a render process can parse it again.
    """

    headers: list[tuple[str, jinja2.Template | str]]  # a str is a constant value
    attachments: list[jinja2.Template]
    body: jinja2.Template | None
    body_is_html: bool
    html: jinja2.Template | None = None
    source_text: str = ""
    #: what parse() was given beyond the text, so a child process can parse it again
    html_text: str | None = None
    names: tuple[str, str] = ("template", "html template")
    #: all compiled fields as one template (combined.py), and how many fields it renders
    combined: jinja2.Template | None = None
    dynamic: int = 0
    _fields: list[tuple[str, jinja2.Template | str]] | None = field(default=None, init=False)

    @classmethod
    def parse(
        cls,
        text: str,
        *,
        html_text: str | None = None,
        name: str = "template",
        html_name: str = "html template",
    ) -> Template:
        text = text.replace("\r\n", "\n")
        head, body = split_header_block(text)
        headers_src: list[tuple[str, str, int]] = []  # name, value, line number
        for lineno, line in enumerate(head, start=1):
            if line[:1] in (" ", "\t") and headers_src:  # folded continuation line
                hname, value, first = headers_src[-1]
                headers_src[-1] = (hname, value + " " + line.strip(), first)
                continue
            m = _HEADER_LINE.match(line)
            if not m:
                raise TemplateError(
                    f"{name}: line {lineno}: not a 'Name: value' header line: {line!r}"
                )
            headers_src.append((m.group(1), m.group(2).strip(), lineno))
        _check_header_names(headers_src, name)
        is_html = any(
            h.lower() == "content-type" and "text/html" in v.lower() for h, v, _ in headers_src
        )
        text_env = make_environment(html=False)
        html_env = make_environment(html=True)
        headers, attachments, sources = _compile_headers(text_env, headers_src, name)
        compiled_body = None
        if body.strip():
            with _syntax_errors(name, len(head) + 1 if head else 0):
                compiled_body = (html_env if is_html else text_env).from_string(body)
            sources.append((body, is_html))
        compiled_html = None
        if html_text is not None:
            with _syntax_errors(html_name, 0):
                compiled_html = html_env.from_string(html_text)
            sources.append((html_text, True))
        return cls(
            headers=headers,
            attachments=attachments,
            body=compiled_body,
            body_is_html=is_html,
            html=compiled_html,
            source_text=text,
            html_text=html_text,
            names=(name, html_name),
            combined=combine(text_env, sources),
            dynamic=len(sources),
        )

    def fields(self) -> list[tuple[str, jinja2.Template | str]]:
        """Every field in render order: headers, attachments, body, html."""
        out = list(self.headers)
        out += [("Attachment", a) for a in self.attachments]
        if self.body is not None:
            out.append(("body", self.body))
        if self.html is not None:
            out.append(("html", self.html))
        return out

    def render(self, ctx: dict[str, Any]) -> list[str]:
        """Every field rendered, in the order of fields(): in one render when possible."""
        fields = self._fields or self.fields()
        self._fields = fields
        if self.combined is not None:
            out = render_combined(self.combined, ctx, self.dynamic)
            if out is not None:
                it = iter(out)
                return [f if isinstance(f, str) else next(it) for _, f in fields]
        token = begin()  # the fields of one row share a budget, as in the combined render
        try:
            return [render_field(f, ctx, name) for name, f in fields]
        finally:
            end(token)

    @classmethod
    def load(cls, path: Path, html_path: Path | None = None) -> Template:
        try:
            text = path.read_text(encoding="utf-8-sig")
            html_text = html_path.read_text(encoding="utf-8-sig") if html_path else None
        except (OSError, UnicodeDecodeError) as exc:
            raise TemplateError(f"cannot read template: {exc}") from exc
        return cls.parse(
            text,
            html_text=html_text,
            name=path.name,
            html_name=html_path.name if html_path else "html template",
        )


def _compile_headers(
    env: jinja2.Environment, headers_src: list[tuple[str, str, int]], name: str
) -> tuple[list[tuple[str, jinja2.Template | str]], list[jinja2.Template], list[tuple[str, bool]]]:
    """Header values and Attachment lines compiled, and the source of each compiled one
    (headers first, then attachments: the render order)."""
    headers: list[tuple[str, jinja2.Template | str]] = []
    attachments: list[jinja2.Template] = []
    header_sources: list[tuple[str, bool]] = []
    attachment_sources: list[tuple[str, bool]] = []
    for h, value, lineno in headers_src:
        lname = h.lower()
        if lname == "content-type":
            continue
        with _syntax_errors(name, lineno - 1):
            if lname == "attachment":
                attachments.append(env.from_string(value))
                attachment_sources.append((value, False))
                continue
            source = protect_address_header(value, h) if lname in ADDRESS_FIELDS else value
            compiled = compile_field(env, source)
            headers.append((h, compiled))
            if not isinstance(compiled, str):
                header_sources.append((source, False))
    return headers, attachments, header_sources + attachment_sources


def _check_header_names(headers_src: list[tuple[str, str, int]], name: str) -> None:
    """No header that only mailspool writes, and no second From, To or Subject."""
    seen: set[str] = set()
    for h, _, lineno in headers_src:
        lname = h.lower()
        if not valid_name(h):
            raise TemplateError(f"{name}: line {lineno}: header name too long")
        if is_protected(h):
            raise TemplateError(
                f"{name}: line {lineno}: header {h} is set by mailspool and cannot be templated"
            )
        if lname in SINGLE and lname in seen:
            raise TemplateError(f"{name}: line {lineno}: a second {h} header")
        seen.add(lname)


@contextlib.contextmanager
def _syntax_errors(name: str, line_offset: int) -> Iterator[None]:
    """Report a Jinja syntax error at its line in the template file."""
    try:
        yield
    except jinja2.TemplateSyntaxError as exc:
        line = (exc.lineno or 1) + line_offset
        raise TemplateError(f"{name}: line {line}: {exc.message}") from exc
    except RecursionError:  # Jinja's parser and compiler recurse into nested expressions
        raise TemplateError(f"{name}: line {line_offset + 1}: nested too deeply") from None


def compile_field(env: jinja2.Environment, source: str) -> jinja2.Template | str:
    """One field's template, or the string itself when it has no Jinja syntax (rendered
    for free by render_field)."""
    if "{" not in source:
        return source
    return env.from_string(source)


def split_header_block(text: str) -> tuple[list[str], str]:
    """Header lines up to the first blank line (spaces on it are invisible in an editor,
    so they count as blank), and the body. No header block if the first line is not a
    header."""
    lines = text.split("\n")
    if not _HEADER_LINE.match(lines[0]):
        return [], text
    for i, line in enumerate(lines):
        if not line.strip():
            return lines[:i], "\n".join(lines[i + 1 :])
    return lines, ""


def template_context(values: Mapping[str, Any]) -> dict[str, Any]:
    """Row columns as variables, plus a lowercase alias where it does not collide, plus
    ``row`` for column names that are not identifiers. The sandbox's globals (its
    range, dict, namespace...: see render_field) are there too, unless a column or alias has
    the name."""
    aliases, row_free = _aliases(tuple(values))
    ctx: dict[str, Any] = {**_GLOBALS, **values}
    for alias, name in aliases:
        ctx[alias] = values[name]
    if row_free:
        ctx["row"] = dict(values)
    return ctx


@functools.lru_cache(maxsize=64)
def _aliases(columns: tuple[str, ...]) -> tuple[tuple[tuple[str, str], ...], bool]:
    """(alias, column) pairs for the columns, and whether ``row`` is free. The same for
    every row of a source, so worked out once."""
    names: dict[str, list[str]] = {}
    for k in columns:
        names.setdefault(k.lower(), []).append(k)
    # "EMAIL" and "Email" both want "email": which one it means is a guess, so neither
    pairs = tuple(
        (alias, found[0])
        for alias, found in names.items()
        if len(found) == 1 and alias not in columns
    )
    return pairs, "row" not in columns and all(alias != "row" for alias, _ in pairs)


# the sandbox's, not a plain environment's: its range() is the one that refuses huge ranges
_GLOBALS = dict(make_environment(html=False).globals)


def render_field(tpl: jinja2.Template | str, ctx: dict[str, Any], field_name: str) -> str:
    """One field rendered on its own budget; an error in it rejects the row, naming
    ``field_name``. ``ctx`` comes from template_context."""
    if isinstance(tpl, str):
        return tpl
    token = begin()
    try:
        # Template.render() copies the environment's globals into a new dict on every
        # call; ctx already holds them (template_context), so share it as the parent
        context = tpl.new_context(ctx, shared=True)
        return tpl.environment.concat(tpl.root_render_func(context))
    except jinja2.UndefinedError as exc:
        raise RejectedRow(field_name, f"template variable {exc.message}") from None
    except jinja2.TemplateError as exc:
        raise RejectedRow(field_name, f"template error: {exc}") from None
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise RejectedRow(field_name, f"template error: {exc}") from None
    finally:
        end(token)
