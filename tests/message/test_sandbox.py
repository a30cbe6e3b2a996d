"""Every template, from a file or over HTTP, is compiled and rendered in Jinja's immutable
sandbox, and one render may do only so much (budget.py): a hostile template is rejected
with a reason, for the field it is in, instead of taking the process down."""

from __future__ import annotations

import asyncio
import csv
import json
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2.sandbox import safe_range

from mailspool.errors import RejectedRow, TemplateError
from mailspool.intake.builder import MAX_MESSAGE_BYTES, Attachments
from mailspool.intake.pool import BuildPool, BuildSpec
from mailspool.intake.producer import Producer
from mailspool.intake.rejects import Rejects
from mailspool.intake.sources import Row
from mailspool.message.render import Renderer, Template, template_context
from mailspool.message.sandbox import budget
from mailspool.message.sandbox.checks import _LINE_BREAKS, _WHITESPACE
from mailspool.queue import MemoryQueue
from tests.support.cli import Result, write_csv

HEAD = "From: a@example.com\nTo: {{ Email }}\nSubject: Hi\n\n"
ROW = {"Name": "ann", "Email": "ann@example.com"}
STEPS = "more than 100,000 loop iterations and calls"
CHARS = "more than 26,214,400 characters of text"
BIG = "{% set s = 'x' * 10000000 %}"  # 10 M characters: allowed, but not three times


def rejection(text: str, values: dict[str, Any] | None = None) -> RejectedRow:
    renderer = Renderer.build(Template.parse(text), None, None)
    with pytest.raises(RejectedRow) as info:
        renderer.render(values or ROW)
    return info.value


HOSTILE = [
    pytest.param("{% for i in range(10**9) %}x{% endfor %}", "Range too big", id="range"),
    pytest.param(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        STEPS, id="nested-loops",
    ),
    pytest.param(
        "{% for i in range(100000) %}{% for j in range(100000) if j < 0 %}"
        "{% endfor %}{% endfor %}",
        STEPS, id="loop-filter",
    ),
    pytest.param("{% for c in 'x' * 1000000 %}{% endfor %}", STEPS, id="loop-over-text"),
    pytest.param(
        "{% macro f(n) %}{% for i in range(1000) %}{% endfor %}{% endmacro %}"
        "{% for i in range(1000) %}{{ f(i) }}{% endfor %}",
        STEPS, id="macro-in-loop",
    ),
    pytest.param("{{ 'a' * 10**9 }}", CHARS, id="multiply"),
    pytest.param("{{ 10**9 * ['a'] }}", CHARS, id="multiply-list"),
    pytest.param("{{ ('a'|safe) * 1000000000 }}", CHARS, id="multiply-markup"),
    pytest.param("{{ 7 ** 100000000 }}", "an integer of more than 65,536 bits", id="power"),
    pytest.param(
        "{% set ns = namespace(x=3) %}{% for i in range(40) %}{% set ns.x = ns.x * ns.x %}"
        "{% endfor %}",
        "an integer of more than 65,536 bits", id="squaring",
    ),
    pytest.param("{{ 'x'|center(10**9) }}", CHARS, id="center"),
    pytest.param("{{ 'x'|center(1000000000) }}", CHARS, id="center-constant"),
    pytest.param("{% set x = 'a' %}" + "{% set x = x ~ x %}" * 40 + "{{ x }}", CHARS, id="tilde"),
    pytest.param(
        "{% set ns = namespace(s='ab') %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}"
        "{% endfor %}",
        CHARS, id="plus",
    ),
    pytest.param("{{ '{:>999999999}'.format(1) }}", CHARS, id="format-width"),
    pytest.param("{{ '{:.999999999f}'.format(1.5) }}", CHARS, id="format-precision"),
    pytest.param("{{ '{:>{}}'.format(1, 999999999) }}", CHARS, id="format-nested-width"),
    pytest.param(BIG + "{{ '{!r}'.format([s, s, s]) }}", CHARS, id="format-repr"),
    pytest.param("{{ '%999999999d' % 1 }}", CHARS, id="percent-width"),
    pytest.param("{{ '%*d' % (999999999, 1) }}", CHARS, id="percent-star"),
    pytest.param("{{ '%999999999d'|format(1) }}", CHARS, id="format-filter"),
    pytest.param(BIG + "{{ '%s' % ([s, s, s],) }}", CHARS, id="percent-list"),
    pytest.param("{{ 'a\nb'|indent(10**9) }}", CHARS, id="indent"),
    pytest.param("{{ ('a' * 10000)|wordwrap(1, wrapstring='x' * 10000) }}", CHARS, id="wordwrap"),
    pytest.param("{{ ('a' * 10000)|replace('', 'b' * 10000) }}", CHARS, id="replace"),
    pytest.param("{{ 'x'.ljust(10**9) }}", CHARS, id="ljust"),
    pytest.param("{{ 'x'.zfill(10**9) }}", CHARS, id="zfill"),
    pytest.param("{{ ('\t' * 100000).expandtabs(100000) }}", CHARS, id="expandtabs"),
    pytest.param("{{ ('x' * 100000).join(['y'] * 1000) }}", CHARS, id="str-join"),
    pytest.param("{{ ('a' * 1000000).translate({97: 'b' * 1000}) }}", CHARS, id="translate"),
    pytest.param("{{ ('ab ' * 5000000).split()|length }}", CHARS, id="split"),
    pytest.param(BIG + "{{ ([s] * 100)|join }}", CHARS, id="join-filter"),
    pytest.param("{{ [1]|batch(10**9, 'x')|list }}", CHARS, id="batch"),
    pytest.param("{{ [1]|slice(10**9)|list }}", CHARS, id="slice"),
    pytest.param("{{ [[1]]|tojson(indent=10**9) }}", CHARS, id="tojson-indent"),
    pytest.param("{{ lipsum(10**6) }}", CHARS, id="lipsum"),
    pytest.param("{{ (1).to_bytes(10**9, 'big') }}", CHARS, id="to-bytes"),
    pytest.param(BIG + "{{ [s, s, s] }}", CHARS, id="printed-list"),
    pytest.param(BIG + "{{ namespace(a=[s, s, s]) }}", CHARS, id="printed-namespace"),
    pytest.param(
        "{% set s = 'x' * 1000 %}{{ dict.fromkeys(range(100000), s) }}", CHARS, id="fromkeys"
    ),
    pytest.param(BIG + "{{ s[1:] }}{{ s[2:] }}{{ s[3:] }}", CHARS, id="slices"),
    pytest.param(BIG + "{% for i in range(3) %}{{ s }}{% endfor %}", CHARS, id="output"),
    pytest.param(
        BIG + "{% set t %}{% for i in range(3) %}{{ s }}{% endfor %}{% endset %}", CHARS,
        id="set-block",
    ),
    pytest.param(
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}", "unsafe", id="globals"
    ),
    pytest.param("{{ ''.__class__.__mro__[1].__subclasses__() }}", "unsafe", id="subclasses"),
    pytest.param("{{ [].append(1) }}", "unsafe", id="mutation"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "reason"), HOSTILE)
def test_a_hostile_template_is_rejected_for_its_field(body: str, reason: str) -> None:
    err = rejection(HEAD + body + "\n")
    assert err.field == "body"
    assert err.reason.startswith("template error: ") and reason in err.reason


@pytest.mark.parametrize(
    ("text", "html", "field"),
    [
        ("From: a@example.com\nTo: {{ Email }}\nSubject: {{ 'a' * 10**9 }}\n\nhi\n", None,
         "Subject"),
        ("From: a@example.com\nTo: {{ Email }}{{ '%999999999d' % 1 }}\n\nhi\n", None, "To"),
        (HEAD + "hi\n", "{% for i in range(100000) %}{{ i }}{{ i }}{% endfor %}", "html"),
    ],
)  # fmt: skip
def test_the_rejection_names_the_field_the_template_is_in(
    text: str, html: str | None, field: str
) -> None:
    renderer = Renderer.build(Template.parse(text, html_text=html), None, None)
    with pytest.raises(RejectedRow) as info:
        renderer.render(ROW)
    assert info.value.field == field and "render limit exceeded" in info.value.reason


def test_the_sender_and_subject_defaults_are_sandboxed_too() -> None:
    renderer = Renderer.build(None, "{{ cycler.__init__.__globals__ }}", None)
    with pytest.raises(RejectedRow) as info:
        renderer.render({"to": "bob@example.com", "subject": "s", "body": "b"})
    assert info.value.field == "From" and "unsafe" in info.value.reason


@pytest.mark.parametrize(
    "expr", ["'a' * 10**9", "'a' * 1000000000", "'x'|center(1000000000)", "'%999999999d' % 1"]
)
def test_constants_are_not_computed_while_compiling(expr: str) -> None:
    """Jinja folds constant expressions when it compiles a template; in the sandbox the
    checked operators are not folded, and what is folded is checked."""
    tracemalloc.start()
    try:
        tpl = Template.parse(HEAD + "{{ " + expr + " }}\n")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000
    with pytest.raises(RejectedRow, match="render limit exceeded"):
        Renderer.build(tpl, None, None).render(ROW)


def test_loops_and_calls_up_to_the_limit_render() -> None:
    # and the call of range(), and the check of the value in the To slot
    loop = "{% for i in range(99998) %}{% endfor %}"
    assert Renderer.build(Template.parse(HEAD + loop + "ok\n"), None, None).render(ROW).text == (
        "ok\n"
    )
    err = rejection(HEAD + loop + "{{ 'x'.upper() }}\n")  # one call more
    assert STEPS in err.reason


def test_each_row_has_a_budget_of_its_own() -> None:
    tpl = Template.parse(HEAD + "{% for i in range(60000) %}{% endfor %}{{ Name }}\n")
    renderer = Renderer.build(tpl, None, None)
    for name in ("ann", "bob", "cy"):  # 60,000 iterations each: not 120,000 for the second
        assert renderer.render({"Name": name, "Email": f"{name}@example.com"}).text == name + "\n"


def test_a_render_that_takes_too_long_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(budget, "MAX_SECONDS", 0.0)
    err = rejection(HEAD + "{% for i in range(100) %}{% endfor %}\n")
    assert "render limit exceeded: took longer than 0 s" in err.reason


def test_recursion_still_stops_the_run() -> None:
    endless = HEAD + "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}\n"
    with pytest.raises(RecursionError):
        Renderer.build(Template.parse(endless), None, None).render(ROW)


def test_a_template_nested_too_deeply_to_compile_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match="t: line 5: nested too deeply"):
        Template.parse(HEAD + "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}\n", name="t")


def test_only_the_sandbox_globals_are_in_a_context() -> None:
    assert template_context(ROW)["range"] is safe_range


def test_the_text_limit_is_the_message_size_limit() -> None:
    assert budget.MAX_CHARS == MAX_MESSAGE_BYTES


def test_split_is_sized_by_what_python_splits_on() -> None:
    chars = [chr(i) for i in range(sys.maxunicode + 1)]
    assert set(_WHITESPACE) == {c for c in chars if c.isspace()}
    assert set(_LINE_BREAKS) == {c for c in chars if len(f"a{c}a".splitlines()) == 2}


# -- ordinary templates render as before --------------------------------------------------

ORDINARY = [
    "{% for i in range(1000) %}{{ loop.index }}{{ ',' if not loop.last }}{% endfor %}",
    "{% for p in people if p.age > 30 %}{{ p.name|title }} {% else %}none{% endfor %}",
    "{{ Name|center(11) }}|{{ Name.ljust(6, '.') }}|{{ '%05d/%-4s|' % (42, 'x') }}",
    "{{ '{:>8}|{:.3f}|{!r}'.format(Name, 3.14159, Name) }}{{ '%s and %s'|format(1, 2) }}",
    "{{ Name ~ ' <' ~ Email ~ '>' }} {{ Name[1:] }} {{ people[:1] }} {{ Name * 3 }}",
    "{{ people|map(attribute='name')|join(', ') }} {{ people|sum(attribute='age') }}",
    "{{ [[1, 2], [3]]|sum(start=[]) }} {{ [(1,), (2, 3)]|sum(start=()) }} {{ [1, 2]|sum }}",
    "{{ 'a b\nc d'|indent(2, true) }}|{{ ('word ' * 30)|wordwrap(20) }}|"
    "{{ Name|replace('n', 'N') }}",
    "{{ people|tojson }} {{ people|batch(2, 'x')|list }} {{ range(5)|slice(2)|list }}",
    "{% macro m(x) %}[{{ x }}]{% endmacro %}{{ m(Name) }}{% set t %}{{ m(1) }}{% endset %}{{ t }}",
    "{% set ns = namespace(n=0) %}{% for i in range(10) %}{% set ns.n = ns.n + i %}{% endfor %}"
    "{{ ns.n }} {{ 2 ** 64 }} {{ 10 // 3 }} {{ 7 % 3 }} {{ -2 ** 3 }}",
    "{{ ', '.join(people|map(attribute='name')) }} {{ Name.split('n') }} {{ dict(a=1) }}",
    "{{ ('x' * 1000000)|length }} {{ ('ab' * 100).replace('a', 'cc')|length }} {{ none }}",
]


def plain(html: bool) -> jinja2.Environment:
    return jinja2.Environment(
        undefined=jinja2.StrictUndefined, autoescape=html, keep_trailing_newline=True
    )


VALUES = {**ROW, "people": [{"name": "ann", "age": 31}, {"name": "bob <b>", "age": 29}]}


@pytest.mark.parametrize("body", ORDINARY)
@pytest.mark.parametrize("html", [False, True])
def test_ordinary_templates_render_as_jinja_renders_them(body: str, html: bool) -> None:
    head = HEAD.replace("\n\n", "\nContent-Type: text/html\n\n") if html else HEAD
    rendered = Renderer.build(Template.parse(head + body + "\n"), None, None).render(VALUES)
    expected = plain(html).from_string(body + "\n").render(VALUES)
    assert (rendered.html if html else rendered.text) == expected


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(value=JSON, other=JSON)
def test_any_row_values_print_as_jinja_prints_them(value: Any, other: Any) -> None:
    body = "{{ v }}|{{ v ~ w }}|{{ [v, w] }}|{{ '%s' % (v,) }}|{{ '{}'.format(w) }}|{{ v|string }}"
    values = {"Email": "ann@example.com", "v": value, "w": other}
    tpl = Template.parse("Subject: x\n\n" + body)
    # a body alone, so that no header check gets in the way of odd values
    assert tpl.render(template_context(values))[-1] == plain(False).from_string(body).render(values)


# -- wherever the render runs ------------------------------------------------------------


async def test_the_budget_holds_on_a_thread() -> None:
    renderer = Renderer.build(Template.parse(HEAD + HOSTILE[1].values[0] + "\n"), None, None)
    with pytest.raises(RejectedRow, match=STEPS):
        await asyncio.to_thread(renderer.render, ROW)


async def test_the_budget_holds_in_a_render_process(tmp_path: Path) -> None:
    text = HEAD + "{% for i in range(n|int) %}{% for j in range(n|int) %}{% endfor %}{% endfor %}\n"
    rows: list[Row | RejectedRow] = [
        Row(i + 2, {"Email": f"p{i}@example.com", "n": "1000" if i % 3 == 0 else "10"})
        for i in range(30)
    ]
    spec = BuildSpec(
        template=BuildSpec.template_of(Template.parse(text)),
        from_addr=None,
        subject=None,
        campaign="c1",
        attachment_dir=tmp_path,
        key_column=None,
    )
    pool = BuildPool(spec=spec, processes=1, head_start=False)  # every row to the child
    try:
        renderer = Renderer.build(Template.parse(text), None, None)
        report = await Producer(
            queue=MemoryQueue(),
            renderer=renderer,
            campaign="c1",
            rejects=Rejects(tmp_path / "rejects.csv"),
            attachments=Attachments(base=tmp_path),
            pool=pool,
        ).run(rows)
    finally:
        pool.close()
    assert (report.new, report.rejected) == (20, 10)
    with (tmp_path / "rejects.csv").open() as f:
        rejected = list(csv.DictReader(f))
    assert [int(r["row"]) for r in rejected] == list(range(2, 32, 3))
    assert {(r["field"], r["reason"]) for r in rejected} == {
        ("body", f"template error: render limit exceeded: {STEPS}")
    }


def test_a_template_file_cannot_run_commands(tmp_path: Path, cli: Callable[..., Result]) -> None:
    write_csv(tmp_path / "r.csv", [("ann", "ann@example.com")])
    (tmp_path / "t.txt").write_text(
        "From: a@example.com\nTo: {{ Email }}\nSubject: Hi\n\n"
        "{{ cycler.__init__.__globals__.os.popen('touch pwned').read() }}\n"
    )
    res = cli("send", "r.csv", "--template", "t.txt", "--json")
    assert res.returncode == 1, res.stderr
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["rejected"] == 1 and summary["queued"] == 0
    with (tmp_path / summary["rejects_file"]).open() as f:
        (rejected,) = csv.DictReader(f)
    assert rejected["row"] == "2" and rejected["field"] == "body"
    assert "'__init__'" in rejected["reason"] and "unsafe" in rejected["reason"]
    assert not (tmp_path / "pwned").exists()
