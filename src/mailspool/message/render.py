"""Per-row rendering with validation: a row's values through a template (template.py)
or straight from its columns (direct mode), checked into a ``Rendered`` message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jinja2

from mailspool.errors import RejectedRow, TemplateError
from mailspool.message.addresses import parse_addresses, single_element
from mailspool.message.headers import check_name, check_text, valid_name
from mailspool.message.headers import check_value as check_header_value
from mailspool.message.template import (
    ADDRESS_FIELDS,
    Template,
    compile_field,
    make_environment,
    render_field,
    template_context,
)

__all__ = ["Rendered", "Renderer", "Template", "check_header_value", "template_context"]

#: direct-mode fields whose list values are lists of addresses
LIST_FIELDS = frozenset(("to", "cc", "bcc", "reply-to"))
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


@dataclass(slots=True, kw_only=True)
class Rendered:
    """One row's message, validated, ready to be composed into bytes (compose.compose).

    ``sender`` and each address are (display name, address) pairs, checked; ``bcc``
    receives the message without a header naming it; ``headers`` are the template's
    other headers (or a direct row's X- headers); ``text`` is the plain body (made from
    ``html`` when the row gave only HTML); ``attachments`` are paths as rendered, to be
    resolved by the job builder (intake/builder.py).
    """

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
        """Each address once, however its case differs (one RCPT, as rows are one job)."""
        seen: dict[str, str] = {}
        for _, addr in (*self.to, *self.cc, *self.bcc):
            seen.setdefault(addr.lower(), addr)
        return list(seen.values())


@dataclass(slots=True, kw_only=True)
class Renderer:
    """Renders a row's values into a :class:`Rendered` message, or rejects the row
    (RejectedRow names the field): with ``template`` (template mode) or, when it is None,
    from the row's own columns (direct mode: from, to, cc, bcc, reply_to, subject, body
    or text, html, headers).

    ``default_from`` and ``default_subject`` (``--from``, ``--subject``: compiled, or a
    plain string) fill in what the template or row leaves out; ``max_recipients`` caps
    To, Cc and Bcc together. Usually made with :meth:`build`.
    """

    template: Template | None = None
    default_from: jinja2.Template | str | None = None
    default_subject: jinja2.Template | str | None = None
    max_recipients: int = 100
    _senders: dict[str, tuple[str, str]] = field(default_factory=dict, init=False)

    @classmethod
    def build(
        cls, template: Template | None, default_from: str | None, default_subject: str | None
    ) -> Renderer:
        """A renderer with ``--from`` and ``--subject`` compiled (each may use row
        variables); TemplateError on a syntax error in either."""
        env = make_environment(html=False)
        try:
            f = compile_field(env, default_from) if default_from else None
            s = compile_field(env, default_subject) if default_subject else None
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"--from/--subject: {exc.message}") from exc
        return cls(template=template, default_from=f, default_subject=s)

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
            fields["from"] = check_header_value(
                "From", render_field(self.default_from, ctx, "From")
            )
        if "subject" not in fields and self.default_subject is not None:
            fields["subject"] = check_header_value(
                "Subject", render_field(self.default_subject, ctx, "Subject")
            )
        return self._validate(fields, extra, text, html, attachments)

    def _direct(
        self, values: Mapping[str, Any], fields: dict[str, str], extra: list[tuple[str, str]]
    ) -> None:
        for column, value in values.items():
            target = DIRECT_COLUMNS.get(column.lower())
            if target is None or value in (None, ""):
                continue
            key, header = target
            if isinstance(value, list):
                text = ", ".join(self._list_items(header, value, key in LIST_FIELDS))
            else:
                text = str(value)
            fields[key] = check_header_value(header, text)
        headers = values.get("headers")
        if isinstance(headers, dict):
            for key, value in headers.items():
                name = str(key)
                where = f"headers.{name}" if valid_name(name) else "headers"
                if not name.lower().startswith("x-"):
                    raise RejectedRow(where, f"only X- headers may be added, not {name[:80]!r}")
                check_name(name, where)
                extra.append((name, check_header_value(where, str(value))))

    def _list_items(self, header: str, items: list[Any], addresses: bool) -> list[str]:
        """A list of addresses: each item one address, and no more than a message may
        have (counted before any is parsed)."""
        if not addresses:
            return [str(v) for v in items]
        if len(items) > self.max_recipients:
            raise RejectedRow(header, f"more than {self.max_recipients} recipients")
        out = [str(v) for v in items]
        for item in out:
            if not single_element(item):
                raise RejectedRow(header, f"each item of the list must be one address: {item!r}")
        return out

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
        limit = self.max_recipients
        to, cc, bcc = (_addresses(fields, name, limit) for name in ("To", "Cc", "Bcc"))
        if not (to or cc or bcc):
            raise RejectedRow("To", "no recipient address")
        if len(to) + len(cc) + len(bcc) > limit:
            raise RejectedRow("To", f"more than {limit} recipients")
        if html is not None:
            check_text("html", html)
            if not text.strip():
                from mailspool.message.htmltext import html_to_text  # html.parser: HTML only

                text = html_to_text(html)
        check_text("body", text)
        return Rendered(
            sender=sender,
            to=to,
            cc=cc,
            bcc=bcc,
            reply_to=_addresses(fields, "Reply-To", limit),
            subject=fields.get("subject", ""),
            headers=extra,
            text=text,
            html=html,
            attachments=attachments,
        )


def _addresses(fields: dict[str, str], header: str, limit: int) -> list[tuple[str, str]]:
    """The addresses of one address header, validated; none when it is absent."""
    value = fields.get(header.lower())
    return parse_addresses(value, header, limit) if value is not None else []


def _text_value(values: Mapping[str, Any], name: str) -> str:
    for k, v in values.items():
        if k.lower() == name and v is not None:
            return str(v)
    return ""
