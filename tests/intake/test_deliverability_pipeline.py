"""DKIM signatures and one-click unsubscribe links, through the pipeline: rows built by the
job builder (here and in render processes), queued by the producer on every backend that
runs without a server, sent by the real worker to the in-process RecordingSMTPServer.
Every received signature is checked by dkimpy and, for RSA, by Perl's Mail::DKIM, each
fed the records keygen printed: a retry of refused recipients, a job another worker
claimed and dropped, a message with attachments wrapped in by the worker, all verify."""

from __future__ import annotations

import email
import email.policy
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from mailspool.errors import RejectedRow, TemplateError
from mailspool.intake.builder import Attachments
from mailspool.intake.deliverability import Deliverability
from mailspool.intake.pool import BuildPool, BuildSpec
from mailspool.intake.producer import Producer
from mailspool.intake.rejects import Rejects
from mailspool.intake.sources import Row
from mailspool.message.compose import with_attachments
from mailspool.message.optout import address_key
from mailspool.message.render import Renderer, Template
from mailspool.message.unsubscribe import Secrets, Unsubscribe, read_token
from mailspool.models import State
from mailspool.queue import Queue
from mailspool.testing import RecordingSMTPServer
from tests.support.deliverability import (
    BACKENDS,
    SECRET,
    TEMPLATE,
    Keys,
    backend,
    drain,
    expire_leases,
    job_builder,
    links,
    make_keys,
    people,
    producer,
    worker,
)
from tests.support.dkim import dkimpy_results, perl_results, signature_tags

ATTACHING = TEMPLATE.replace("Subject:", "Attachment: terms.pdf\nSubject:")
PAYLOAD = b"%PDF-1.4 " + bytes(range(256)) * 40


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(params=BACKENDS)
async def queue(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Queue]:
    async for q in backend(request.param, tmp_path):
        yield q


def both(keys: Keys) -> Deliverability:
    return Deliverability(signer=keys.signer, unsubscribe=links())


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def assert_verifies(data: bytes, keys: Keys) -> None:
    """Both signatures (RSA, Ed25519) pass dkimpy; the RSA one passes Mail::DKIM."""
    assert data.startswith(b"DKIM-Signature:")
    assert dkimpy_results(data, keys.records) == ["pass", "pass"]
    rsa = [r for r in perl_results(data, keys.records) if r.algorithm == "rsa-sha256"]
    assert [r.result for r in rsa] == ["pass"], rsa


def token_of(msg: EmailMessage) -> str:
    value = str(msg["List-Unsubscribe"])
    assert value.startswith("<https://mail.example.com/u/") and value.endswith(">")
    return value[1:-1].rpartition("/")[2]


# -- signed at intake, verified on the wire ------------------------------------------------


@pytest.mark.parametrize("attaching", [False, True], ids=["plain", "attachment"])
async def test_messages_sent_by_the_worker_verify(
    queue: Queue, tmp_path: Path, smtpd: RecordingSMTPServer, keys: Keys, attaching: bool
) -> None:
    (tmp_path / "terms.pdf").write_bytes(PAYLOAD)
    template = ATTACHING if attaching else TEMPLATE
    rows = people("ann@example.org", "bob@example.org", "carl@example.net")
    rep = await producer(tmp_path, queue, both(keys), template).run(rows)
    assert (rep.new, rep.unsigned, rep.rejected) == (3, 0, 0)
    await drain(worker(queue, smtpd.port), queue)
    assert len(smtpd.messages) == 3
    for m in smtpd.messages:
        assert_verifies(m.data, keys)
        msg = parse(m.data)
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        for tags in signature_tags(m.data):
            signed = tags["h"].split(":")
            assert "list-unsubscribe" in signed and "list-unsubscribe-post" in signed
        got = read_token(Secrets([SECRET]), token_of(msg))
        assert got == Unsubscribe(address_key(m.recipients[0]), "default", "c1")
        if attaching:
            assert msg.get_content_type() == "multipart/mixed"
            (part,) = list(msg.iter_attachments())
            assert part.get_filename() == "terms.pdf" and part.get_content() == PAYLOAD


class Once(dict[str, str]):
    """RCPT replies the test server gives once each (then it accepts the address)."""

    def get(self, key: str, default: Any = None) -> Any:
        return self.pop(key, default)


async def test_a_retry_of_refused_recipients_sends_the_signed_bytes_again(
    queue: Queue, tmp_path: Path, smtpd: RecordingSMTPServer, keys: Keys
) -> None:
    (tmp_path / "terms.pdf").write_bytes(PAYLOAD)
    template = ATTACHING.replace("To: {{ Email }}", "To: {{ Email }}, {{ Other }}")
    row = Row(2, {"Name": "Ann", "Email": "ann@example.org", "Other": "bob@example.org"})
    await producer(tmp_path, queue, both(keys), template).run([row])
    smtpd.handler.rcpt_replies = Once({"bob@example.org": "451 4.2.1 mailbox busy, later"})
    await drain(worker(queue, smtpd.port), queue)
    first, retry = smtpd.messages
    assert (first.recipients, retry.recipients) == (["ann@example.org"], ["bob@example.org"])
    # the child job (an id of its own) wrapped the attachment as the parent did
    assert retry.data == first.data
    assert_verifies(retry.data, keys)
    assert (await queue.stats()).counts[State.SENT.value] == 2


async def test_a_job_another_worker_claimed_and_dropped_still_verifies(
    queue: Queue, tmp_path: Path, smtpd: RecordingSMTPServer, keys: Keys
) -> None:
    (tmp_path / "terms.pdf").write_bytes(PAYLOAD)
    await producer(tmp_path, queue, both(keys), ATTACHING).run(people("ann@example.org"))
    (claimed,) = await queue.claim("a-worker-that-dies", 10, 0.01)
    expire_leases()
    await drain(worker(queue, smtpd.port), queue)
    (m,) = smtpd.messages
    assert_verifies(m.data, keys)
    job = await queue.get(claimed.id)
    assert job is not None and job.state is State.SENT and job.attempts == 2


async def test_render_processes_sign_and_keep_the_list(
    queue: Queue, tmp_path: Path, smtpd: RecordingSMTPServer, keys: Keys
) -> None:
    (tmp_path / "terms.pdf").write_bytes(PAYLOAD)
    template = ATTACHING.replace("From: News <news@example.com>", "From: {{ Sender }}")
    d = Deliverability(signer=keys.signer, unsubscribe=links(), list_name="weekly")
    spec = BuildSpec(
        template=BuildSpec.template_of(Template.parse(template)),
        from_addr=None,
        subject=None,
        campaign="c1",
        attachment_dir=tmp_path,
        key_column=None,
        deliverability=d,
    )
    rows = [
        Row(i + 2, {"Name": f"p{i}", "Email": f"p{i}@example.org", "Sender": sender})
        for i, sender in enumerate(["news@example.com"] * 5 + ["news@other.example"] * 2)
    ]
    pool = BuildPool(spec=spec, processes=1, head_start=False)
    try:
        prod = Producer(
            queue=queue,
            renderer=Renderer.build(Template.parse(template), None, None),
            campaign="c1",
            rejects=Rejects(tmp_path / "rejects.csv"),
            attachments=Attachments(base=tmp_path),
            pool=pool,
            deliverability=d,
        )
        rep = await prod.run(rows)
    finally:
        await pool.aclose()
    assert pool.rows_built_here == 0  # every row was built in the child
    assert (rep.new, rep.unsigned) == (7, 2)
    await drain(worker(queue, smtpd.port), queue)
    assert len(smtpd.messages) == 7
    for m in smtpd.messages:
        msg = parse(m.data)
        token = read_token(Secrets([SECRET]), token_of(msg))
        assert token.list_name == "weekly"
        if "example.com" in str(msg["From"]):
            assert_verifies(m.data, keys)
        else:
            assert not m.data.startswith(b"DKIM-Signature:")


# -- DKIM at enqueue: required, unsigned ----------------------------------------------------


async def test_dkim_required_rejects_a_row_whose_from_domain_has_no_key(
    queue: Queue, tmp_path: Path, keys: Keys
) -> None:
    template = TEMPLATE.replace("From: News <news@example.com>", "From: {{ Sender }}")
    rows = [
        Row(2, {"Name": "a", "Email": "a@example.org", "Sender": "news@example.com"}),
        Row(3, {"Name": "b", "Email": "b@example.org", "Sender": "news@Other.Example"}),
    ]
    d = Deliverability(signer=keys.signer, dkim_required=True)
    rep = await producer(tmp_path, queue, d, template).run(rows)
    assert (rep.new, rep.rejected, rep.unsigned) == (1, 1, 0)
    assert rep.rejects_file is not None
    rejects = rep.rejects_file.read_text(encoding="utf-8")
    assert "From" in rejects and "no DKIM key for the domain other.example" in rejects


@pytest.mark.parametrize("signing", [True, False])
async def test_unsigned_messages_are_counted_when_keys_are_configured(
    queue: Queue, tmp_path: Path, keys: Keys, signing: bool
) -> None:
    template = TEMPLATE.replace("From: News <news@example.com>", "From: {{ Sender }}")
    rows = [
        Row(2 + i, {"Name": "x", "Email": f"x{i}@example.org", "Sender": sender})
        for i, sender in enumerate(["n@example.com", "n@other.example", "n@third.example"])
    ]
    d = Deliverability(signer=keys.signer if signing else None)
    rep = await producer(tmp_path, queue, d, template).run(rows)
    assert rep.new == 3
    assert rep.unsigned == (2 if signing else 0)


def test_dkim_required_without_a_key_is_refused() -> None:
    with pytest.raises(ValueError, match="needs at least one DKIM key"):
        Deliverability(dkim_required=True)


# -- one-click unsubscribe ------------------------------------------------------------------


def direct(**fields: str) -> Row:
    return Row(1, {"from": "news@example.com", "subject": "s", "text": "t", **fields})


@pytest.mark.parametrize(
    ("fields", "first"),
    [
        ({"to": "Ann@Example.ORG, bob@example.org", "cc": "cat@example.org"}, "Ann@example.org"),
        ({"cc": "cat@example.org, dan@example.org", "bcc": "eve@example.org"}, "cat@example.org"),
        ({"bcc": "eve@example.org, fay@example.org"}, "eve@example.org"),
    ],
    ids=["to", "cc", "bcc"],
)
def test_the_token_names_the_first_recipient_the_list_and_the_campaign(
    tmp_path: Path, fields: dict[str, str], first: str
) -> None:
    b = job_builder(tmp_path, Deliverability(unsubscribe=links()), campaign="spring")
    b.renderer = Renderer.build(None, None, None)
    for list_name, stored in ((None, ""), ("weekly", "weekly")):
        job = b.build(direct(**fields), 1.7e9, list_name=list_name)
        assert job.list_name == stored
        got = read_token(Secrets([SECRET]), token_of(parse(job.message)))
        assert got == Unsubscribe(address_key(first), list_name or "default", "spring")


def test_an_invalid_list_name_rejects_the_message(tmp_path: Path) -> None:
    b = job_builder(tmp_path, Deliverability(unsubscribe=links()))
    with pytest.raises(RejectedRow) as err:
        b.build(people("ann@example.org")[0], 1.7e9, list_name="no spaces")
    assert err.value.field == "list"


HTML = '<p>Hi {{ Name }}, <a href="{{ unsubscribe_url }}">unsubscribe</a></p>'


def test_templates_get_the_unsubscribe_url_in_text_and_html(tmp_path: Path) -> None:
    text = TEMPLATE + "Unsubscribe: {{ unsubscribe_url }}\n"
    d = Deliverability(unsubscribe=links("https://mail.example.com/u&l=1"))
    b = job_builder(tmp_path, d)
    b.renderer = Renderer.build(Template.parse(text, html_text=HTML), None, None)
    # a column of that name cannot replace the link
    row = Row(
        2, {"Name": "Ann", "Email": "ann@example.org", "unsubscribe_url": "https://x.example"}
    )
    msg = parse(b.build(row, 1.7e9).message)
    url = str(msg["List-Unsubscribe"])[1:-1]
    assert "&" in url
    plain = msg.get_body(("plain",))
    rich = msg.get_body(("html",))
    assert plain is not None and rich is not None
    assert f"Unsubscribe: {url}\r\n" in plain.get_content()
    assert f'href="{url.replace("&", "&amp;")}"' in rich.get_content()
    assert "x.example" not in msg.as_string() and "invalid" not in msg.as_string()


def test_without_unsubscribe_the_variable_is_undefined(tmp_path: Path) -> None:
    b = job_builder(tmp_path, Deliverability(), TEMPLATE + "{{ unsubscribe_url }}\n")
    with pytest.raises(RejectedRow, match="unsubscribe_url"):
        b.build(people("ann@example.org")[0], 1.7e9)
    job = job_builder(tmp_path, Deliverability()).build(people("ann@example.org")[0], 1.7e9)
    assert b"List-Unsubscribe" not in job.message


@pytest.mark.parametrize("name", ["List-Unsubscribe", "list-unsubscribe-post"])
def test_no_template_may_set_the_unsubscribe_headers(name: str) -> None:
    with pytest.raises(TemplateError, match=name):
        Template.parse(TEMPLATE.replace("Subject:", f"{name}: <https://evil.example/>\nSubject:"))


def test_a_message_sent_as_the_worker_sends_it_is_what_was_signed(
    tmp_path: Path, keys: Keys
) -> None:
    """The builder signs compose.with_attachments of the job: the bytes the worker makes
    from the stored job and the blob, whatever id the job has."""
    (tmp_path / "terms.pdf").write_bytes(PAYLOAD)
    attachments = Attachments(base=tmp_path)
    b = job_builder(tmp_path, both(keys), ATTACHING)
    b.attachments = attachments
    job = b.build(people("ann@example.org")[0], 1.7e9)
    part = attachments.part(job.attachments[0])
    job.id = "another-id-entirely"
    assert dkimpy_results(with_attachments(job, [part]), keys.records) == ["pass", "pass"]
