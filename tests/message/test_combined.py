"""All of a template's fields in one render: the same output as one render per field,
and the same errors, naming the same field."""

from __future__ import annotations

from typing import Any

import pytest

from mailspool.errors import RejectedRow
from mailspool.message.render import Renderer, Template, template_context
from mailspool.message.template import render_field

ROW = {"Name": "Ann <b>", "Email": "ann@example.com", "n": 3, "tags": ["x", "y"]}

TEMPLATES = [
    "From: News <news@example.com>\nTo: {{ Name }} <{{ Email }}>\nSubject: Hi {{ Name }}\n\n"
    "Hello {{ Name | title }}, {{ Email }}\n",
    "From: {{ 'News' }} <news@example.com>\nTo: {{ Email }}\nSubject: {% if n > 2 %}many"
    "{% else %}few{% endif %}\nX-Tags: {% for t in tags %}{{ t }};{% endfor %}\n\n"
    "{% set total = n * 2 %}{{ total }} items{# a comment #}\n",
    "From: news@example.com\nTo: {{ Email }}\nSubject: {{- ' padded ' -}}\n"
    "Content-Type: text/html\n\n<p>{{ Name }}</p>{{ '<i>ok</i>' | safe }}\n",
    "To: {{ Email }}\nSubject: {% with a = 1 %}{{ a }}{% endwith %}\n\n{{ row['Name'] }}\n",
]


def per_field(tpl: Template, ctx: dict[str, Any]) -> list[str]:
    return [render_field(f, ctx, name) for name, f in tpl.fields()]


@pytest.mark.parametrize("source", TEMPLATES)
def test_one_render_gives_what_each_field_alone_gives(source: str) -> None:
    tpl = Template.parse(source)
    assert tpl.combined is not None
    ctx = template_context(ROW)
    assert tpl.render(ctx) == per_field(tpl, ctx)


def test_html_template_is_escaped_and_headers_are_not() -> None:
    tpl = Template.parse(TEMPLATES[0], html_text="<p>{{ Name }}</p>")
    assert tpl.combined is not None
    r = Renderer(template=tpl).render(ROW)
    assert r.to == [("Ann <b>", "ann@example.com")]
    assert r.subject == "Hi Ann <b>"
    assert r.text.startswith("Hello Ann <B>,")
    assert r.html == "<p>Ann &lt;b&gt;</p>"


def test_a_set_in_one_field_does_not_reach_another() -> None:
    tpl = Template.parse("To: {{ Email }}\nSubject: {% set x = 1 %}hi\n\n{{ x }}\n")
    assert tpl.combined is not None
    with pytest.raises(RejectedRow) as exc:
        Renderer(template=tpl).render(ROW)
    assert exc.value.field == "body"
    assert "'x' is undefined" in exc.value.reason


@pytest.mark.parametrize(
    ("values", "field", "reason"),
    [
        ({"Email": "ann@example.com"}, "Subject", "'Name' is undefined"),
        ({**ROW, "Name": "Ann\x00"}, "Subject", "header injection"),
        ({**ROW, "Name": "Ann\nBcc: eve@example.com"}, "Subject", "header injection"),
        ({**ROW, "n": "three"}, "body", "template error"),
    ],
)
def test_errors_name_the_field_as_one_render_per_field_does(
    values: dict[str, Any], field: str, reason: str
) -> None:
    tpl = Template.parse("To: {{ Email }}\nSubject: Hi {{ Name }}\n\n{{ n + 1 }}\n")
    assert tpl.combined is not None
    with pytest.raises(RejectedRow) as exc:
        Renderer(template=tpl).render(values)
    assert exc.value.field == field
    assert reason in exc.value.reason


def test_statements_that_need_the_top_level_render_field_by_field() -> None:
    tpl = Template.parse(
        "From: a@example.com\nTo: {{ Email }}\nSubject: hi\n\n"
        "{% macro hello(n) %}Hello {{ n }}{% endmacro %}{{ hello(Name) }}\n"
    )
    assert tpl.combined is None
    assert Renderer(template=tpl).render(ROW).text == "Hello Ann <b>\n"
