"""Property-based: hostile text in a message's subject, display name and address, with DKIM
signing and one-click unsubscribe on, is either refused naming a field, or becomes a
message that satisfies the wire invariant, whose signature verifies and whose
unsubscribe token names its first recipient; any list name a message may carry is
refused (field ``list``) or kept exactly, in the job and in the token."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailspool.errors import RejectedRow
from mailspool.intake.deliverability import Deliverability
from mailspool.intake.sources import Row
from mailspool.message.optout import LIST_NAME, address_key
from mailspool.message.unsubscribe import Secrets, read_token
from mailspool.testing import check_message
from tests.support.deliverability import SECRET, Keys, job_builder, links, make_keys
from tests.support.dkim import dkimpy_results
from tests.support.faces import RECIPIENT, template_text
from tests.support.strategies import TEXT

EXAMPLES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("keys"))


def token_address(message: bytes) -> str:
    start = message.index(b"List-Unsubscribe: <") + len(b"List-Unsubscribe: <")
    url = message[start : message.index(b">", start)].decode("ascii")
    return read_token(Secrets([SECRET]), url.rpartition("/")[2]).address


@EXAMPLES
@given(field=st.sampled_from(["subject", "display_name", "address", "header_value"]), value=TEXT)
def test_hostile_values_are_refused_or_signed_and_linked_soundly(
    keys: Keys, field: str, value: str
) -> None:
    template = template_text(field, None).replace("Hi.", "Hi. {{ unsubscribe_url }}")
    with tempfile.TemporaryDirectory() as tmp:
        d = Deliverability(signer=keys.signer, unsubscribe=links())
        b = job_builder(Path(tmp), d, template)
        try:
            job = b.build(Row(2, {"V": value, "Email": RECIPIENT}), 1.7e9)
        except RejectedRow as exc:
            assert exc.field and exc.reason
            return
    assert not check_message(job.sender, list(job.recipients), job.message)
    assert dkimpy_results(job.message, keys.records) == ["pass", "pass"]
    assert token_address(job.message) in {address_key(a) for a in job.recipients}


LIST_TEXT = st.one_of(
    st.from_regex(LIST_NAME, fullmatch=True),
    st.text(alphabet=st.sampled_from("aZ09._:-/ @\r\n\x00é"), max_size=70),
)


@settings(max_examples=200, deadline=None)
@given(name=LIST_TEXT)
def test_any_list_name_is_refused_or_kept_exactly(name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        b = job_builder(Path(tmp), Deliverability(unsubscribe=links()))
        row = Row(2, {"Name": "Ann", "Email": RECIPIENT})
        try:
            job = b.build(row, 1.7e9, list_name=name)
        except RejectedRow as exc:
            assert exc.field == "list" and not LIST_NAME.fullmatch(name)
            return
    assert LIST_NAME.fullmatch(name)
    assert job.list_name == ("" if name == "default" else name)
    start = job.message.index(b"List-Unsubscribe: <") + len(b"List-Unsubscribe: <")
    url = job.message[start : job.message.index(b">", start)].decode("ascii")
    assert read_token(Secrets([SECRET]), url.rpartition("/")[2]).list_name == name
