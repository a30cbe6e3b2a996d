"""Templates and per-row rendering with validation. No I/O besides reading templates.

A template is a header block (``Name: value`` lines up to the first blank line) and a
body, as in DESIGN section 5. Each header value and the body are compiled separately so
that a value which renders to a newline is caught instead of becoming a new header.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from mailspool.addresses import parse_addresses
from mailspool.errors import RejectedRow, TemplateError
from mailspool.htmltext import html_to_text

_HEADER_LINE = re.compile(r"^([A-Za-z][A-Za-z0-9-]*)[ \t]*:[ \t]?(.*)$")
_FORBIDDEN = re.compile(r"[\r\n\x00]")
ADDRESS_FIELDS = ("from", "to", "cc", "bcc", "reply-to")
# headers we set ourselves; a template may not override them
RESERVED = frozenset(
    ("message-id", "date", "mime-version", "content-transfer-encoding", "content-disposition")
)
# direct mode: column (lowercase) -> (field key, header name used in reject reports)
DIRECT_COLUMNS = {
    "from": ("from", "From"),
    "to": ("to", "To"),
    "cc": ("cc", "Cc"),
    "bcc": ("bcc", "Bcc"),
    "reply_to": ("reply-to", "Reply-To"),
    "reply-to": ("reply-to", "Reply-To"),
    "subject": ("subject", "Subject"),
}


@dataclass(slots=True)
class Rendered:
    """A validated message, ready to be composed into bytes."""

    sender: tuple[str, str]
    to: list[tuple[str, str]]
    cc: list[tuple[str, str]] = field(default_factory=list)
    bcc: list[tuple[str, str]] = field(default_factory=list)
    reply_to: list[tuple[str, str]] = field(default_factory=list)
    subject: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    text: str = ""
    html: str | None = None
    attachments: list[str] = field(default_factory=list)

    @property
    def recipients(self) -> list[str]:
        seen: dict[str, None] = {}
        for _, addr in (*self.to, *self.cc, *self.bcc):
            seen.setdefault(addr, None)
        return list(seen)


def make_environment(*, html: bool, sandboxed: bool = False) -> jinja2.Environment:
    cls = SandboxedEnvironment if sandboxed else jinja2.Environment
    env = cls(
        undefined=jinja2.StrictUndefined,
        autoescape=html,
        keep_trailing_newline=True,
        trim_blocks=False,
    )
    env.filters["mailspool_phrase"] = quote_phrase
    env.filters["mailspool_qcontent"] = escape_qcontent
    return env


# A variable right before ``<addr>`` in an address header is a display name: its value
# is data, so a comma in it ("Smith, John") must not split the list, nor may it add a
# recipient ("Eve <eve@example.net>, Bob"). Such expressions get quoted when rendered.
_EXPR = r"\{\{(-?)((?:(?!\}\}).)*?)(-?)\}\}"  # {{ expr }}, {{- expr -}}
_QUOTED_NAME = re.compile(rf'"{_EXPR}"(?=\s*<)', re.DOTALL)
_BARE_NAME = re.compile(rf"{_EXPR}(?=\s*<)", re.DOTALL)
_PHRASE_SPECIALS = frozenset('()<>[]:;@\\,."')


def escape_qcontent(value: object) -> str:
    """The inside of a quoted string: backslashes and quotes escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"')


def quote_phrase(value: object) -> str:
    """A display name, quoted when it holds characters that mean something in an address."""
    text = str(value)
    if _PHRASE_SPECIALS.isdisjoint(text):
        return text
    return f'"{escape_qcontent(text)}"'


def protect_display_names(source: str) -> str:
    """Rewrite an address header's template so display-name expressions are quoted."""
    source = _QUOTED_NAME.sub(r'"{{\1 (\2) | mailspool_qcontent \3}}"', source)
    return _BARE_NAME.sub(r"{{\1 (\2) | mailspool_phrase \3}}", source)


@dataclass(slots=True)
class Template:
    """A parsed template: compiled header values and body."""

    headers: list[tuple[str, jinja2.Template | str]]  # a str is a constant value
    attachments: list[jinja2.Template]
    body: jinja2.Template | None
    body_is_html: bool
    html: jinja2.Template | None = None
    source_text: str = ""

    @classmethod
    def parse(
        cls,
        text: str,
        *,
        html_text: str | None = None,
        name: str = "template",
        html_name: str = "html template",
        sandboxed: bool = False,
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
        for h, _, lineno in headers_src:
            if h.lower() in RESERVED:
                raise TemplateError(
                    f"{name}: line {lineno}: header {h} is set by mailspool and cannot be templated"
                )
        is_html = any(
            h.lower() == "content-type" and "text/html" in v.lower() for h, v, _ in headers_src
        )
        text_env = make_environment(html=False, sandboxed=sandboxed)
        html_env = make_environment(html=True, sandboxed=sandboxed)
        headers: list[tuple[str, jinja2.Template | str]] = []
        attachments: list[jinja2.Template] = []
        for h, v, lineno in headers_src:
            lname = h.lower()
            if lname == "content-type":
                continue
            with _syntax_errors(name, lineno - 1):
                if lname == "attachment":
                    attachments.append(text_env.from_string(v))
                elif lname in ADDRESS_FIELDS:
                    headers.append((h, _compile(text_env, protect_display_names(v))))
                else:
                    headers.append((h, _compile(text_env, v)))
        compiled_body = None
        if body.strip():
            with _syntax_errors(name, len(head) + 1 if head else 0):
                compiled_body = (html_env if is_html else text_env).from_string(body)
        compiled_html = None
        if html_text is not None:
            with _syntax_errors(html_name, 0):
                compiled_html = html_env.from_string(html_text)
        return cls(headers, attachments, compiled_body, is_html, compiled_html, text)

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


@contextlib.contextmanager
def _syntax_errors(name: str, line_offset: int) -> Iterator[None]:
    """Report a Jinja syntax error at its line in the template file."""
    try:
        yield
    except jinja2.TemplateSyntaxError as exc:
        line = (exc.lineno or 1) + line_offset
        raise TemplateError(f"{name}: line {line}: {exc.message}") from exc


def _compile(env: jinja2.Environment, source: str) -> jinja2.Template | str:
    """A template, or the string itself when it has no Jinja syntax (rendered for free)."""
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
    ``row`` for column names that are not identifiers."""
    ctx: dict[str, Any] = dict(values)
    aliases: dict[str, list[str]] = {}
    for k in values:
        aliases.setdefault(k.lower(), []).append(k)
    for alias, names in aliases.items():
        # "EMAIL" and "Email" both want "email": which one it means is a guess, so neither
        if len(names) == 1 and alias not in ctx:
            ctx[alias] = values[names[0]]
    ctx.setdefault("row", dict(values))
    for name, value in _GLOBALS.items():  # range, dict, namespace...: see _render
        ctx.setdefault(name, value)
    return ctx


_GLOBALS = dict(jinja2.Environment().globals)


def _render(tpl: jinja2.Template | str, ctx: dict[str, Any], field_name: str) -> str:
    if isinstance(tpl, str):
        return tpl
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


def check_header_value(name: str, value: str) -> str:
    if _FORBIDDEN.search(value):
        raise RejectedRow(name, "header value contains a line break or NUL (header injection)")
    return value.strip()


@dataclass(slots=True)
class Renderer:
    """Renders rows with one template (template mode) or from columns (direct mode)."""

    template: Template | None = None
    default_from: jinja2.Template | str | None = None
    default_subject: jinja2.Template | str | None = None
    max_recipients: int = 100
    _senders: dict[str, tuple[str, str]] = field(default_factory=dict)

    @classmethod
    def build(
        cls, template: Template | None, default_from: str | None, default_subject: str | None
    ) -> Renderer:
        env = make_environment(html=False)
        try:
            f = _compile(env, default_from) if default_from else None
            s = _compile(env, default_subject) if default_subject else None
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"--from/--subject: {exc.message}") from exc
        return cls(template, f, s)

    def render(self, values: Mapping[str, Any]) -> Rendered:
        fields: dict[str, str] = {}
        extra: list[tuple[str, str]] = []
        attachments: list[str] = []
        text = ""
        html: str | None = None
        ctx = template_context(values)
        if self.template is not None:
            for name, tpl in self.template.headers:
                value = check_header_value(name, _render(tpl, ctx, name))
                lname = name.lower()
                if lname in ADDRESS_FIELDS or lname == "subject":
                    fields[lname] = value
                elif value:
                    extra.append((name, value))
            for tpl in self.template.attachments:
                path = check_header_value("Attachment", _render(tpl, ctx, "Attachment"))
                if path:
                    attachments.append(path)
            body = _render(self.template.body, ctx, "body") if self.template.body else ""
            if self.template.body_is_html:
                html = body
            else:
                text = body
            if self.template.html is not None:
                html = _render(self.template.html, ctx, "html")
        else:
            self._direct(values, fields, extra)
            text = _text_value(values, "body") or _text_value(values, "text")
            html = _text_value(values, "html") or None
        if "from" not in fields and self.default_from is not None:
            fields["from"] = check_header_value("From", _render(self.default_from, ctx, "From"))
        if "subject" not in fields and self.default_subject is not None:
            fields["subject"] = check_header_value(
                "Subject", _render(self.default_subject, ctx, "Subject")
            )
        return self._validate(fields, extra, text, html, attachments)

    def _direct(
        self, values: Mapping[str, Any], fields: dict[str, str], extra: list[tuple[str, str]]
    ) -> None:
        for column, value in values.items():
            target = DIRECT_COLUMNS.get(column.lower())
            if target is None or value in (None, ""):
                continue
            text = ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)
            fields[target[0]] = check_header_value(target[1], text)
        headers = values.get("headers")
        if isinstance(headers, dict):
            for name, value in headers.items():
                if not str(name).lower().startswith("x-"):
                    raise RejectedRow(f"headers.{name}", "only X- headers may be added")
                extra.append((str(name), check_header_value(str(name), str(value))))

    def _sender(self, value: str) -> tuple[str, str]:
        """The sender, parsed once per distinct value (it is usually the same on every row)."""
        sender = self._senders.get(value)
        if sender is None:
            senders = parse_addresses(value, "From")
            if len(senders) != 1:
                raise RejectedRow("From", "exactly one sender address is required")
            sender = senders[0]
            if len(self._senders) < 1024:
                self._senders[value] = sender
        return sender

    def _validate(
        self,
        fields: dict[str, str],
        extra: list[tuple[str, str]],
        text: str,
        html: str | None,
        attachments: list[str],
    ) -> Rendered:
        if not fields.get("from"):
            raise RejectedRow(
                "From", "no sender: set From in the template, a from column, or --from"
            )
        sender = self._sender(fields["from"])
        to = parse_addresses(fields.get("to", ""), "To")
        cc = parse_addresses(fields.get("cc", ""), "Cc")
        bcc = parse_addresses(fields.get("bcc", ""), "Bcc")
        if not (to or cc or bcc):
            raise RejectedRow("To", "no recipient address")
        if len(to) + len(cc) + len(bcc) > self.max_recipients:
            raise RejectedRow("To", f"more than {self.max_recipients} recipients")
        if html is not None and not text.strip():
            text = html_to_text(html)
        if "\x00" in text or (html is not None and "\x00" in html):
            raise RejectedRow("body", "body contains a NUL character")
        return Rendered(
            sender=sender,
            to=to,
            cc=cc,
            bcc=bcc,
            reply_to=parse_addresses(fields.get("reply-to", ""), "Reply-To"),
            subject=fields.get("subject", ""),
            headers=extra,
            text=text,
            html=html,
            attachments=attachments,
        )


def _text_value(values: Mapping[str, Any], name: str) -> str:
    for k, v in values.items():
        if k.lower() == name and v is not None:
            return str(v)
    return ""
