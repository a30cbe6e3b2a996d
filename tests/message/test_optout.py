"""The keys addresses are suppressed and unsubscribed by: case and IDNA forms of one
address are one key, over generated addresses; the cheap look-up agrees with the
validating one."""

from __future__ import annotations

import string

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mailspool.message import optout
from mailspool.message.optout import (
    address_key,
    check_list_name,
    domain_key,
    entry_key,
    lookup_key,
)

LEAN = settings(max_examples=300, deadline=None)

ATOM = st.text(
    alphabet=string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~", min_size=1, max_size=8
)
LOCAL = st.lists(ATOM, min_size=1, max_size=3).map(".".join)
# letters whose upper and lower case map one to one (not ß, whose upper case is SS)
CASED = string.ascii_letters + string.digits + "üÜéÉøØåÅçÇ"
LABEL = st.text(alphabet=CASED + "ß", min_size=1, max_size=10)
TLD = st.sampled_from(["example", "Example", "COM", "org", "de"])
DOMAIN = st.builds(lambda labels, tld: ".".join([*labels, tld]), st.lists(LABEL, max_size=3), TLD)
ADDRESS = st.builds(lambda local, domain: f"{local}@{domain}", LOCAL, DOMAIN)


def key_or_none(address: str) -> str | None:
    try:
        return address_key(address)
    except ValueError:
        return None


def test_unicode_and_idna_forms_and_cases_are_one_address() -> None:
    key = "ann@xn--bcher-kva.example"
    for form in ("Ann@Bücher.example", "ann@xn--bcher-kva.example", "ANN@XN--BCHER-KVA.EXAMPLE"):
        assert address_key(form) == key
        assert entry_key(form) == key
        assert lookup_key(form) == key
    assert entry_key("@BÜCHER.example") == "@xn--bcher-kva.example" == domain_key(key)
    assert entry_key(" @example.COM ") == "@example.com"


def test_what_is_not_an_address_or_domain_is_refused() -> None:
    for bad in ("", "ann", "ann@", "@", "ann@example", "a b@example.com", "ann@@example.com"):
        with pytest.raises(ValueError):
            entry_key(bad)
    # a domain is not an address
    with pytest.raises(ValueError):
        address_key("@example.com")
    for nothing in ("", "ann", "@example.com", "ann@"):
        assert lookup_key(nothing) is None


def test_local_parts_can_be_made_case_sensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(optout, "LOCAL_PART_CASE_SENSITIVE", True)
    assert address_key("Ann@Bücher.EXAMPLE") == "Ann@xn--bcher-kva.example"
    assert lookup_key("Ann@EXAMPLE.com") == "Ann@example.com"
    assert address_key("ann@example.com") != address_key("Ann@example.com")


def test_list_names() -> None:
    for good in ("default", "news", "a", "News_2025.q1:fr-BE", "x" * 64):
        assert check_list_name(good) == good
    for bad in ("", "-news", ".news", "news letter", "news\n", "x" * 65, "liste-é"):
        with pytest.raises(ValueError):
            check_list_name(bad)


@LEAN
@given(ADDRESS)
def test_the_key_is_ascii_idempotent_and_the_same_for_every_form(address: str) -> None:
    key = key_or_none(address)
    assume(key is not None)
    assert key is not None
    assert key.isascii()
    assert address_key(key) == key
    local, _, domain = address.rpartition("@")
    ascii_domain = key.rpartition("@")[2]
    # the xn-- form of the domain, in any case, is the same address
    assert address_key(f"{local}@{ascii_domain.upper()}") == key
    assert entry_key("@" + domain) == domain_key(key) == "@" + ascii_domain
    # so is the whole address in another case, when no letter changes length
    if all(c in CASED for c in domain):
        assert address_key(address.swapcase()) == key
        assert address_key(address.upper()) == key


@LEAN
@given(ADDRESS)
def test_the_cheap_lookup_agrees_with_the_validating_key(address: str) -> None:
    key = key_or_none(address)
    assume(key is not None)
    assert lookup_key(address) == key
    assert lookup_key(str(key)) == key
    assert lookup_key(str(key).upper()) == key


@LEAN
@given(st.text(alphabet=st.sampled_from(list("aZ@.ü-_ \t")), max_size=20))
def test_lookup_never_raises_and_agrees_wherever_a_key_exists(text: str) -> None:
    found = lookup_key(text)
    key = key_or_none(text)
    if key is not None:
        assert found == key
