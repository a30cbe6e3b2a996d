"""One contract suite for the suppression list, run unchanged against every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailspool.queue import JobStore, Queue, SQLiteQueue
from mailspool.queue.suppression import (
    ALL_LISTS,
    MemorySuppressionList,
    Reason,
    Suppression,
    SuppressionList,
)
from tests.support.services import RabbitMQNamespace

BACKENDS = ["memory", "sqlite", "redis", "redis-store", "postgres", "rabbitmq"]
T0 = 1_700_000_000.0
DAY = 86_400.0


@pytest.fixture(params=BACKENDS, name="s")
async def suppressions(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SuppressionList]:
    """A fresh, empty suppression list of each backend. A backend adds itself here with a
    namespace of its own per test (a file, a key prefix, a schema), and skips (fails
    under CI) when its server is absent: the SQLite queue's, the Redis queue's, the Redis
    job store's, the PostgreSQL store's, and the RabbitMQ queue's (its store's)."""
    if request.param == "memory":
        yield MemorySuppressionList()
        return
    holder: Queue | JobStore
    if request.param == "sqlite":
        holder = SQLiteQueue(tmp_path / "q.db")
    elif request.param == "redis":
        from mailspool.queue import RedisQueue

        holder = RedisQueue(request.getfixturevalue("redis_url"))
    elif request.param == "redis-store":
        from mailspool.queue import RedisJobStore

        holder = RedisJobStore(request.getfixturevalue("redis_url"))
    elif request.param == "postgres":
        from mailspool.queue import PostgresStore

        ns: RabbitMQNamespace = request.getfixturevalue("rabbitmq")  # its schema only
        holder = PostgresStore(ns.store)
    elif request.param == "rabbitmq":
        from mailspool.queue import RabbitMQQueue

        ns = request.getfixturevalue("rabbitmq")
        holder = RabbitMQQueue(url=ns.amqp(), store=ns.store)
    else:  # pragma: no cover - every param is handled above
        raise AssertionError(request.param)
    await holder.open()
    try:
        yield holder.suppressions
    finally:
        await holder.close()


def entry(
    address: str,
    list_name: str | None = None,
    reason: Reason = Reason.MANUAL,
    created_at: float = T0,
    expires_at: float | None = None,
    source: str = "test",
) -> Suppression:
    return Suppression(address, list_name, reason, source, created_at, expires_at)


async def everything(s: SuppressionList) -> list[Suppression]:
    return await s.entries(limit=10_000)


async def test_an_address_entry_suppresses_that_address_only(s: SuppressionList) -> None:
    await s.add([entry("ann@example.com")])
    asked = ["ann@example.com", "bob@example.com", "ann@example.org", "ann@mail.example.com"]
    assert await s.suppressed(asked, "default", T0) == {"ann@example.com"}


async def test_a_domain_entry_suppresses_the_domain_not_its_subdomains(
    s: SuppressionList,
) -> None:
    await s.add([entry("@example.com")])
    asked = ["ann@example.com", "bob@EXAMPLE.com", "ann@mail.example.com", "ann@example.org"]
    assert await s.suppressed(asked, "default", T0) == {"ann@example.com", "bob@EXAMPLE.com"}


async def test_a_list_entry_holds_for_its_list_and_a_global_one_for_every_list(
    s: SuppressionList,
) -> None:
    await s.add([entry("ann@example.com", "news"), entry("bob@example.com", None)])
    both = ["ann@example.com", "bob@example.com"]
    assert await s.suppressed(both, "news", T0) == set(both)
    assert await s.suppressed(both, "offers", T0) == {"bob@example.com"}
    # no list: only what is suppressed everywhere
    assert await s.suppressed(both, None, T0) == {"bob@example.com"}


async def test_a_domain_entry_can_be_for_one_list(s: SuppressionList) -> None:
    await s.add([entry("@example.com", "news")])
    assert await s.suppressed(["ann@example.com"], "news", T0) == {"ann@example.com"}
    assert await s.suppressed(["ann@example.com"], "offers", T0) == set()


async def test_case_and_idna_forms_are_the_same_address(s: SuppressionList) -> None:
    added = await s.add([entry("Ann@Bücher.example"), entry("@STRASSE.example", "news")])
    assert [e.address for e in added] == ["ann@xn--bcher-kva.example", "@strasse.example"]
    forms = [
        "ann@xn--bcher-kva.example",
        "ANN@XN--BCHER-KVA.EXAMPLE",
        "Ann@Bücher.example",
        "ann@BÜCHER.example",
    ]
    assert await s.suppressed(forms, "default", T0) == set(forms)
    assert await s.suppressed(["bob@Strasse.Example"], "news", T0) == {"bob@Strasse.Example"}
    # another local part on the same domain is another address
    assert await s.suppressed(["anne@bücher.example"], "default", T0) == set()


async def test_an_entry_holds_until_it_expires(s: SuppressionList) -> None:
    await s.add([entry("ann@example.com", "news", Reason.BOUNCED, expires_at=T0 + DAY)])
    assert await s.suppressed(["ann@example.com"], "news", T0 + DAY - 1) == {"ann@example.com"}
    assert await s.suppressed(["ann@example.com"], "news", T0 + DAY) == set()
    # expired entries are still listed until purged
    assert len(await everything(s)) == 1
    assert await s.purge_expired(T0 + DAY) == 1
    assert await everything(s) == []


async def test_an_expired_domain_entry_leaves_an_address_entry_in_force(
    s: SuppressionList,
) -> None:
    await s.add([entry("@example.com", expires_at=T0 + 10), entry("ann@example.com")])
    asked = ["ann@example.com", "bob@example.com"]
    assert await s.suppressed(asked, "default", T0 + 5) == set(asked)
    assert await s.suppressed(asked, "default", T0 + 20) == {"ann@example.com"}


async def test_purge_keeps_what_has_not_expired(s: SuppressionList) -> None:
    await s.add(
        [
            entry("a@example.com", expires_at=T0 + 10),
            entry("b@example.com", expires_at=T0 + 30),
            entry("c@example.com"),
        ]
    )
    assert await s.purge_expired(T0 + 20) == 1
    assert [e.address for e in await everything(s)] == ["b@example.com", "c@example.com"]


async def test_remove_takes_one_scope_only(s: SuppressionList) -> None:
    await s.add([entry("ann@example.com", "news"), entry("ann@example.com", None)])
    assert await s.remove(["ANN@Example.com"], "news") == 1
    assert await s.suppressed(["ann@example.com"], "news", T0) == {"ann@example.com"}
    assert await s.remove(["ann@example.com"], None) == 1
    assert await s.suppressed(["ann@example.com"], "news", T0) == set()
    assert await s.remove(["ann@example.com", "nobody@example.com"], None) == 0


async def test_remove_a_domain_with_its_idna_form(s: SuppressionList) -> None:
    await s.add([entry("@bücher.example")])
    assert await s.remove(["@XN--BCHER-KVA.example"], None) == 1
    assert await everything(s) == []


async def test_adding_again_keeps_one_entry_and_the_first_of_equals(s: SuppressionList) -> None:
    first = entry("ann@example.com", "news", Reason.UNSUBSCRIBED, source="unsubscribe:c1")
    later = entry("Ann@example.com", "news", Reason.MANUAL, created_at=T0 + 50, source="api")
    await s.add([first])
    await s.add([later])
    assert await everything(s) == [first]


async def test_adding_again_never_shortens_an_entry(s: SuppressionList) -> None:
    await s.add([entry("ann@example.com", reason=Reason.UNSUBSCRIBED)])
    await s.add([entry("ann@example.com", reason=Reason.BOUNCED, expires_at=T0 + DAY)])
    [kept] = await everything(s)
    assert (kept.reason, kept.expires_at) == (Reason.UNSUBSCRIBED, None)
    assert await s.suppressed(["ann@example.com"], "default", T0 + 2 * DAY) == {"ann@example.com"}


async def test_adding_again_extends_an_expiring_entry(s: SuppressionList) -> None:
    await s.add([entry("bob@example.com", reason=Reason.BOUNCED, expires_at=T0 + DAY)])
    longer = entry(
        "bob@example.com", reason=Reason.BOUNCED, created_at=T0 + 10, expires_at=T0 + 3 * DAY
    )
    await s.add([longer])
    assert await everything(s) == [longer]
    shorter = entry("bob@example.com", reason=Reason.MANUAL, expires_at=T0 + 2 * DAY)
    await s.add([shorter])
    assert await everything(s) == [longer]
    forever = entry("bob@example.com", reason=Reason.COMPLAINED, created_at=T0 + 20)
    await s.add([forever])
    assert await everything(s) == [forever]


async def test_an_expired_entry_is_replaced_by_a_new_one(s: SuppressionList) -> None:
    await s.add([entry("bob@example.com", reason=Reason.BOUNCED, expires_at=T0 + 10)])
    again = entry(
        "bob@example.com", reason=Reason.BOUNCED, created_at=T0 + DAY, expires_at=T0 + 2 * DAY
    )
    await s.add([again])
    assert await everything(s) == [again]
    assert await s.suppressed(["bob@example.com"], "default", T0 + DAY + 1) == {"bob@example.com"}


async def test_duplicates_in_one_batch_are_merged_as_if_added_in_turn(
    s: SuppressionList,
) -> None:
    short = entry("ann@example.com", expires_at=T0 + 10)
    forever = entry("ANN@example.com", reason=Reason.COMPLAINED)
    added = await s.add([short, forever, entry("ann@example.com", expires_at=T0 + 20)])
    assert added == [entry("ann@example.com", reason=Reason.COMPLAINED)]
    assert await everything(s) == added


async def test_invalid_entries_are_refused_and_nothing_is_added(s: SuppressionList) -> None:
    good = entry("ann@example.com")
    bad = [
        entry("not an address"),
        entry("ann@"),
        entry("@"),
        entry("ann@example.com", "bad list name"),
        entry("ann@example.com", reason="resigned"),  # type: ignore[arg-type]
        entry("ann@example.com", expires_at=T0),
        entry("ann@example.com", created_at=float("nan")),
        entry("ann@example.com", source="x" * 201),
    ]
    for b in bad:
        with pytest.raises(ValueError):
            await s.add([good, b])
    assert await everything(s) == []
    with pytest.raises(ValueError):
        await s.remove(["ann@example.com", "garbage"], None)


async def test_the_check_takes_any_strings_and_answers_as_given(s: SuppressionList) -> None:
    await s.add([entry("ann@example.com"), entry("@example.org")])
    asked = [
        "ann@example.com",
        "ann@example.com",  # twice
        "  ann@example.com ",
        "",
        "@example.org",  # a domain is not a recipient
        "no-at-sign",
        "x@",
        "bob@example.org",
    ]
    assert await s.suppressed(asked, "default", T0) == {
        "ann@example.com",
        "  ann@example.com ",
        "bob@example.org",
    }
    assert await s.suppressed([], "default", T0) == set()


async def test_a_large_batch_is_answered_at_once(s: SuppressionList) -> None:
    await s.add([entry(f"user{i}@example.com", "news") for i in range(0, 3000, 3)])
    await s.add([entry("@blocked.example")])
    asked = [f"user{i}@example.com" for i in range(3000)] + ["x@blocked.example"]
    hit = await s.suppressed(asked, "news", T0)
    assert hit == {f"user{i}@example.com" for i in range(0, 3000, 3)} | {"x@blocked.example"}


async def test_pages_cover_every_entry_once_in_order(s: SuppressionList) -> None:
    added = await s.add(
        [entry(f"u{i:02d}@example.com", "news") for i in range(25)]
        + [entry(f"u{i:02d}@example.com") for i in range(0, 25, 5)]
        + [entry("@example.com", "offers")]
    )
    pages: list[list[Suppression]] = []
    after: tuple[str, str] | None = None
    while page := await s.entries(limit=7, after=after):
        pages.append(page)
        after = page[-1].position
    assert [len(p) for p in pages] == [7, 7, 7, 7, 3]
    seen = [e for p in pages for e in p]
    assert seen == sorted(added, key=lambda e: e.position)
    # the domain entry sorts first ("@" before letters), the global entry before a list's
    assert seen[0].address == "@example.com"
    assert [e.list_name for e in seen[1:3]] == [None, "news"]


async def test_entries_filter_by_list_and_reason(s: SuppressionList) -> None:
    await s.add(
        [
            entry("a@example.com", "news", Reason.UNSUBSCRIBED),
            entry("b@example.com", "news", Reason.BOUNCED, expires_at=T0 + DAY),
            entry("c@example.com", None, Reason.COMPLAINED),
            entry("d@example.com", "offers", Reason.UNSUBSCRIBED),
        ]
    )

    async def addresses(**kw: object) -> list[str]:
        return [e.address for e in await s.entries(**kw)]  # type: ignore[arg-type]

    assert await addresses(list_name="news") == ["a@example.com", "b@example.com"]
    assert await addresses(list_name=None) == ["c@example.com"]
    assert await addresses(list_name=ALL_LISTS, reason=Reason.UNSUBSCRIBED) == [
        "a@example.com",
        "d@example.com",
    ]
    assert await addresses(list_name="news", reason=Reason.BOUNCED) == ["b@example.com"]
    assert await addresses(list_name="nothing") == []
    with pytest.raises(ValueError):
        await s.entries(limit=0)
    with pytest.raises(ValueError):
        await s.entries(list_name="bad name")
