"""Who opted out of what: the keys the suppression list and the unsubscribe tokens share.

An opt-out names an address (``ann@example.com``) or a whole domain (``@example.com``),
and a mailing list (``--list``, default ``default``). Every place that stores or compares
one goes through the functions here, so that the suppression list of every backend, the
unsubscribe tokens and the CLI agree on when two addresses are the same:

- the domain is compared as DNS does: case-insensitive, and an internationalised domain
  is the same as its IDNA (``xn--``) form: ``Ann@Bücher.example`` is
  ``ann@xn--bcher-kva.example``;
- the local part (before the ``@``) is compared case-insensitively too. RFC 5321 lets a
  server tell ``Ann`` from ``ann``, but no large provider does, and a suppression that
  misses because of a capital letter mails someone who asked not to be mailed. A
  deployment that needs case-sensitive local parts sets
  :data:`LOCAL_PART_CASE_SENSITIVE` before anything is stored (keys already stored are
  not rewritten).

A key is therefore the address as :func:`mailspool.message.addresses.normalize` gives it
(validated, domain in lowercase IDNA), lowercased; a domain key is ``@`` and the domain.
"""

from __future__ import annotations

import re

#: compare local parts case-sensitively (read at every call; see the module docstring)
LOCAL_PART_CASE_SENSITIVE = False

#: a list name: like a campaign name, at most 64 characters, so that it fits in a token
LIST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
DEFAULT_LIST = "default"


def _fold(local: str, domain: str) -> str:
    return f"{local if LOCAL_PART_CASE_SENSITIVE else local.lower()}@{domain.lower()}"


def address_key(address: str) -> str:
    """The key of one address (surrounding blanks ignored); raises ValueError for anything
    that is not a valid address, a ``@domain`` included."""
    # imported here (email_validator): `status` and the queue's lookups never validate
    from mailspool.message.addresses import normalize

    local, _, domain = normalize(address.strip()).rpartition("@")
    return _fold(local, domain)


def entry_key(value: str) -> str:
    """The key of an address or of a whole domain written ``@example.com``, as an operator
    gives it; raises ValueError."""
    from mailspool.message.addresses import normalize_domain

    value = value.strip()
    if value.startswith("@"):
        return "@" + normalize_domain(value)
    return address_key(value)


def lookup_key(address: str) -> str | None:
    """The key of an address to look up, cheaply: for an address as the queue holds it
    (already through ``normalize``, so ASCII) no validation is repeated. Never raises:
    a value that cannot be an address gives None (nothing can be stored under its key).
    Agrees with :func:`address_key` on every address that accepts."""
    address = address.strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        return None
    if address.isascii():
        return _fold(local, domain)
    try:
        return address_key(address)
    except ValueError:
        return None


def domain_key(key: str) -> str:
    """The domain key (``@example.com``) of an address key, or of a domain key."""
    return "@" + key.rpartition("@")[2]


def is_domain_key(key: str) -> bool:
    return key.startswith("@")


def check_list_name(name: str) -> str:
    """A list name as given, or ValueError: a letter or digit, then letters, digits and
    ``. _ : -``, 64 characters at most."""
    if not LIST_NAME.fullmatch(name):
        raise ValueError(
            f"invalid list name {name[:80]!r}: a letter or digit, then letters, digits"
            " and . _ : -, 64 characters at most"
        )
    return name
