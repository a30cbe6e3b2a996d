"""Mailbox providers: which provider a recipient domain belongs to, and how mail to it is
shaped (connections, messages per connection, rate, and the replies that mean "too fast").

The rules come from a TOML file: the shipped ``providers.toml`` (a starting point, see
docs/relays.md) or the operator's own (``--providers FILE``). A domain belongs to the
first provider one of whose ``domains`` patterns it matches (``*`` stands for any run of
characters, dots included: ``hotmail.*``, ``*.onmicrosoft.com``); with ``--resolve-mx``
a domain no pattern names belongs to the provider whose ``mx`` suffixes name one of its
MX hosts (any domain whose MX is under ``google.com`` is Google's). Others belong to no
provider and are shaped only by the usual limits.
"""

from __future__ import annotations

import fnmatch
import math
import pkgutil
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailspool.delivery.limits import parse_rate
from mailspool.errors import ConfigError

__all__ = ["Provider", "Providers", "Throttle", "load_providers"]

_CODE = re.compile(r"^[245][0-9x][0-9x]$", re.ASCII)
_ENHANCED = re.compile(r"^[245]\.[0-9x]{1,3}\.[0-9x]{1,3}$", re.ASCII)


@dataclass(frozen=True, slots=True)
class Throttle:
    """A reply that means "slow down": ``"421 4.7.0"``, ``"451 4.7.650"``, ``"4xx TSS04"``
    or only text (``"TSS04"``). The code and enhanced code match digit by digit (``x``
    for any digit); the text matches anywhere in the reply, ignoring case. ``suspend``:
    seconds to stop sending to the provider altogether after such a reply (0: only cut
    its rate)."""

    code: str = ""
    enhanced: str = ""
    text: str = ""
    suspend: float = 0.0

    @classmethod
    def parse(cls, pattern: str, suspend: float = 0.0) -> Throttle:
        words = pattern.split()
        code = words.pop(0).lower() if words and _CODE.match(words[0].lower()) else ""
        enhanced = words.pop(0).lower() if words and _ENHANCED.match(words[0].lower()) else ""
        text = " ".join(words).lower()
        if not (code or enhanced or text):
            raise ConfigError(f"empty throttling pattern {pattern!r}")
        return cls(code, enhanced, text, suspend)

    def matches(self, code: int | None, enhanced: str | None, text: str) -> bool:
        if self.code and (code is None or not _digits(self.code, str(code))):
            return False
        if self.enhanced and not (enhanced and _digits(self.enhanced, enhanced)):
            return False
        return not self.text or self.text in text.lower()


def _digits(pattern: str, value: str) -> bool:
    """``4.7.x`` matches ``4.7.650``: a part ``x`` is any number, else ``x`` is any digit."""
    parts, values = pattern.split("."), value.split(".")
    if len(parts) != len(values):
        return False
    for p, v in zip(parts, values, strict=True):
        if p == "x":
            continue
        if len(p) != len(v) or any(a not in ("x", b) for a, b in zip(p, v, strict=True)):
            return False
    return True


@dataclass(frozen=True, slots=True)
class Provider:
    """One provider's shaping. ``rate`` is the ceiling in messages a second (None: no
    ceiling; the rate is limited only after a throttling reply, from the rate seen
    then); ``connections``: messages in flight to it (0: no limit);
    ``messages_per_connection``: messages one connection carries before it is closed
    (0: the relay URL's own); on a throttling reply the rate is multiplied by
    ``decrease`` (never below ``floor``), and after ``quiet`` seconds without one it
    climbs by ``increase`` times the rate that was too fast (adaptive.py); replies
    within ``cooldown`` seconds of a cut do not cut again."""

    name: str
    domains: tuple[str, ...] = ()
    mx: tuple[str, ...] = ()
    rate: float | None = None
    connections: int = 0
    messages_per_connection: int = 0
    throttle: tuple[Throttle, ...] = ()
    decrease: float = 0.5
    increase: float = 0.1
    quiet: float = 10.0
    floor: float = 0.1
    #: seconds after a cut during which more throttling replies do not cut again: the
    #: provider still counts what came before it (its window), the new rate needs time
    cooldown: float = 2.0

    def throttled(self, code: int | None, enhanced: str | None, text: str) -> Throttle | None:
        """The pattern this reply matches, if it says "slow down"."""
        for t in self.throttle:
            if t.matches(code, enhanced, text):
                return t
        return None


@dataclass
class Providers:
    """The rules: providers in the order they are tried."""

    providers: Sequence[Provider]
    _by_domain: dict[str, Provider | None] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.by_name: dict[str, Provider] = {p.name: p for p in self.providers}

    def for_domain(self, domain: str) -> Provider | None:
        """The provider ``domain`` belongs to by its name alone (None: no pattern names it)."""
        domain = domain.lower().rstrip(".")
        if domain in self._by_domain:
            return self._by_domain[domain]
        found = next(
            (p for p in self.providers if any(_match(domain, pat) for pat in p.domains)), None
        )
        if len(self._by_domain) < 100_000:  # a bounded cache: domains of one campaign
            self._by_domain[domain] = found
        return found

    def for_mx(self, hosts: Iterable[str]) -> Provider | None:
        """The provider whose ``mx`` suffixes name one of these MX hosts."""
        names = [h.lower().rstrip(".") for h in hosts]
        for p in self.providers:
            for suffix in p.mx:
                if any(h == suffix or h.endswith("." + suffix) for h in names):
                    return p
        return None


def _match(domain: str, pattern: str) -> bool:
    if "*" not in pattern:
        return domain == pattern
    return fnmatch.fnmatchcase(domain, pattern)


def load_providers(path: Path | None = None) -> Providers:
    """The rules of ``path``, or the shipped ones (mailspool/delivery/providers.toml)."""
    import tomllib  # imported with the first rules read: 1.5 ms

    try:
        if path is None:  # pkgutil, not importlib.resources: 3 ms less at every start
            shipped = pkgutil.get_data("mailspool.delivery", "providers.toml")
            if shipped is None:  # a loader that cannot read package data
                raise ConfigError("the shipped providers file cannot be read")
            text = shipped.decode("utf-8")
        else:
            text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except OSError as exc:
        raise ConfigError(f"cannot read the providers file {path}: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"the providers file {path} is not valid TOML: {exc}") from exc
    return parse_providers(data, str(path or "providers.toml"))


def parse_providers(data: Mapping[str, Any], where: str = "providers") -> Providers:
    unknown = set(data) - {"defaults", "provider"}
    if unknown:
        raise ConfigError(f"{where}: unknown section {sorted(unknown)[0]!r} (defaults, provider)")
    defaults = _table(data.get("defaults", {}), f"{where}: [defaults]")
    tables = _table(data.get("provider", {}), f"{where}: [provider]")
    providers = []
    for name, table in tables.items():
        merged = {**defaults, **_table(table, f"{where}: [provider.{name}]")}
        providers.append(_provider(name, merged, f"{where}: [provider.{name}]"))
    return Providers(providers)


_KEYS = {
    "domains", "mx", "rate", "connections", "messages_per_connection", "throttle",
    "decrease", "increase", "quiet", "floor", "cooldown",
}  # fmt: skip


def _provider(name: str, t: dict[str, Any], where: str) -> Provider:
    unknown = set(t) - _KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,39}", name):
        raise ConfigError(f"{where}: a provider name is 1-40 lowercase letters, digits, - or _")
    rate = parse_rate(str(t["rate"])) if t.get("rate") else None
    floor = parse_rate(str(t["floor"])) if "floor" in t else 0.1
    decrease = _number(t, "decrease", 0.5, where)
    if not 0 < decrease < 1:
        raise ConfigError(f"{where}: decrease is a factor between 0 and 1, e.g. 0.5")
    return Provider(
        name=name,
        domains=_words(t.get("domains", []), f"{where}: domains"),
        mx=_words(t.get("mx", []), f"{where}: mx"),
        rate=rate,
        connections=int(_number(t, "connections", 0, where)),
        messages_per_connection=int(_number(t, "messages_per_connection", 0, where)),
        throttle=tuple(_throttle(x, f"{where}: throttle") for x in t.get("throttle", [])),
        decrease=decrease,
        increase=_number(t, "increase", 0.1, where),
        quiet=_number(t, "quiet", 10.0, where),
        cooldown=_number(t, "cooldown", 2.0, where),
        floor=min(floor, rate) if rate else floor,
    )


def _throttle(item: object, where: str) -> Throttle:
    if isinstance(item, str):
        return Throttle.parse(item)
    if isinstance(item, dict) and isinstance(item.get("reply"), str):
        suspend = item.get("suspend", 0)
        if not isinstance(suspend, int | float) or not 0 <= suspend < math.inf:
            raise ConfigError(f"{where}: suspend is a number of seconds")
        return Throttle.parse(item["reply"], float(suspend))
    raise ConfigError(f'{where}: each is a reply pattern or {{reply = "...", suspend = 60}}')


def _table(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table")
    return value


def _words(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where} must be a list of names")
    return tuple(v.lower().rstrip(".") for v in value)


def _number(t: Mapping[str, Any], key: str, default: float, where: str) -> float:
    value = t.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise ConfigError(f"{where}: {key} must be a number >= 0")
    return float(value)
