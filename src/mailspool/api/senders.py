"""Which From domains ``serve`` sends for.

A bearer token lets a client queue mail; it must not let the client send as any domain
the relay would sign or vouch for. By default ``serve`` allows the domain of ``--from``
and of every DKIM key it was given; ``--allowed-from DOMAIN`` adds others, and ``*``
allows any, only when said. The command line (``send``, ``enqueue``) trusts its operator
and has no such list.
"""

from __future__ import annotations

from collections.abc import Iterable

from mailspool.config import ANY_SENDER as ANY
from mailspool.errors import MailspoolError, RejectedRow
from mailspool.message.addresses import normalize_domain, parse_addresses


class SenderDomains:
    """The allowed sender domains; ``check`` raises RejectedRow for the ``from`` field."""

    def __init__(self, domains: Iterable[str], *, any_domain: bool = False) -> None:
        self.any = any_domain
        self.domains = frozenset(domains)

    @classmethod
    def from_settings(
        cls, allowed: Iterable[str], from_addr: str | None, extra: Iterable[str] = ()
    ) -> SenderDomains:
        """``allowed``: the --allowed-from values; ``from_addr``: --from, whose domain is
        allowed when it is a plain address (not a template); ``extra``: other domains
        (those of the DKIM keys)."""
        given = list(allowed)
        domains = {normalize_domain(d) for d in given if d.strip() != ANY}
        domains.update(normalize_domain(d) for d in extra)
        if from_addr and "{" not in from_addr:
            try:
                for _, addr in parse_addresses(from_addr, "from"):
                    domains.add(addr.rpartition("@")[2])
            except MailspoolError:
                pass  # --from itself is checked where it is used
        return cls(domains, any_domain=any(d.strip() == ANY for d in given))

    def describe(self) -> str:
        return ANY if self.any else ", ".join(sorted(self.domains)) or "none"

    def check(self, sender: str) -> None:
        if self.any:
            return
        domain = sender.rpartition("@")[2].lower()
        if domain not in self.domains:
            raise RejectedRow(
                "from",
                f"the sender domain {domain} is not allowed here (allowed: {self.describe()});"
                " the server's operator can add it with --allowed-from",
            )
