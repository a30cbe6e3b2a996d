"""Per-row rendering with validation: a row's values through a template (template.py)
or straight from its columns (direct mode), checked into a ``Rendered`` message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jinja2

from mailspool.addresses import parse_addresses
from mailspool.errors import RejectedRow, TemplateError
from mailspool.htmltext import html_to_text
from mailspool.template import (
    ADDRESS_FIELDS,
    Template,
    _compile,
    _render,
    make_environment,
    template_context,
)

__all__ = ["Rendered", "Renderer", "Template", "check_header_value", "template_context"]

_FORBIDDEN = re.compile(r"[\r\n\x00]")
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
            tpl = self.template
            rendered = iter(tpl.render(ctx))
            for name, _ in tpl.headers:
                value = check_header_value(name, next(rendered))
                lname = name.lower()
                if lname in ADDRESS_FIELDS or lname == "subject":
                    fields[lname] = value
                elif value:
                    extra.append((name, value))
            for _ in tpl.attachments:
                path = check_header_value("Attachment", next(rendered))
                if path:
                    attachments.append(path)
            body = next(rendered) if tpl.body is not None else ""
            if tpl.body_is_html:
                html = body
            else:
                text = body
            if tpl.html is not None:
                html = next(rendered)
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
        to, cc, bcc = (_addresses(fields, name) for name in ("To", "Cc", "Bcc"))
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
            reply_to=_addresses(fields, "Reply-To"),
            subject=fields.get("subject", ""),
            headers=extra,
            text=text,
            html=html,
            attachments=attachments,
        )


def _addresses(fields: dict[str, str], header: str) -> list[tuple[str, str]]:
    """The addresses of one address header, validated; none when it is absent."""
    value = fields.get(header.lower())
    return parse_addresses(value, header) if value is not None else []


def _text_value(values: Mapping[str, Any], name: str) -> str:
    for k, v in values.items():
        if k.lower() == name and v is not None:
            return str(v)
    return ""
