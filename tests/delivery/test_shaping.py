"""Per-provider shaping: the rules (providers.py and the shipped providers.toml), the
adapted rate (adaptive.py), the shaper's admissions (shaping.py), and the adapted rates
shared through a real Redis (shared_lanes.py)."""

from __future__ import annotations

import asyncio
import itertools
import math
from pathlib import Path

import pytest

from mailspool.delivery.adaptive import Adapted, climb, cut
from mailspool.delivery.providers import Provider, Providers, Throttle, load_providers
from mailspool.delivery.shaping import GO, HELD, Hold, LocalLanes, Shaper
from mailspool.errors import ConfigError, ReplyError, Stage
from mailspool.models import Job


def job(to: str, n: int = 0) -> Job:
    return Job(
        id=f"j{n}-{to}", campaign="c", key=f"k{n}-{to}", message_id=f"<{n}@example.com>",
        sender="a@example.com", recipients=(to,), message=b"",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("pattern", "reply", "hit"),
    [
        ("421 4.7.0", (421, "4.7.0", "Try again later"), True),
        ("421 4.7.0", (421, "4.7.1", "Try again later"), False),
        ("421 4.7.0", (450, "4.7.0", "Try again later"), False),
        ("4xx TSS04", (421, None, "[TSS04] Messages temporarily deferred"), True),
        ("TSS04", (554, None, "tss04 said"), True),
        ("451 4.7.x", (451, "4.7.650", "The mail server has been temporarily rate limited"), True),
        ("451 4.7.x", (451, None, "no enhanced code"), False),
        (
            "450 4.2.1 rate",
            (450, "4.2.1", "The user you are trying to contact is receiving mail at a rate"),
            True,
        ),
        ("450 4.2.1 rate", (450, "4.2.1", "mailbox busy"), False),
    ],
)
def test_throttling_patterns_match_code_enhanced_code_and_text(
    pattern: str, reply: tuple[int, str | None, str], hit: bool
) -> None:
    assert Throttle.parse(pattern).matches(*reply) is hit


def test_the_shipped_rules_name_the_big_providers_by_domain_and_by_mx() -> None:
    rules = load_providers()
    by = {d: (p.name if (p := rules.for_domain(d)) else None) for d in (
        "gmail.com", "GoogleMail.com.", "hotmail.co.uk", "outlook.com", "yahoo.co.jp", "aol.com",
        "icloud.com", "web.de", "gmx.net", "mail.ru", "yandex.ru", "comcast.net", "example.com",
    )}  # fmt: skip
    assert by == {
        "gmail.com": "google", "GoogleMail.com.": "google", "hotmail.co.uk": "microsoft",
        "outlook.com": "microsoft", "yahoo.co.jp": "yahoo", "aol.com": "yahoo",
        "icloud.com": "apple", "web.de": "gmx", "gmx.net": "gmx", "mail.ru": "mailru",
        "yandex.ru": "yandex", "comcast.net": "comcast", "example.com": None,
    }  # fmt: skip
    google = rules.for_mx(["alt1.aspmx.l.google.com.", "aspmx.l.google.com"])
    assert google is not None and google.name == "google"
    assert rules.for_mx(["mx.notgoogle.com", "google.com.evil.example"]) is None
    ms = rules.for_mx(["example-com.mail.protection.outlook.com"])
    assert ms is not None and ms.name == "microsoft"
    assert google.throttled(421, "4.7.0", "Try again later") is not None
    assert google.throttled(550, "5.1.1", "no such user") is None


def test_a_rules_file_of_ones_own_and_its_mistakes(tmp_path: Path) -> None:
    f = tmp_path / "p.toml"
    f.write_text(
        '[defaults]\nconnections = 3\n[provider.acme]\ndomains = ["acme.test", "*.acme.test"]\n'
        'rate = "120/m"\nthrottle = ["421 4.7.0", {reply = "TS99", suspend = 30}]\n'
    )
    (acme,) = load_providers(f).providers
    assert (acme.connections, acme.rate, acme.floor) == (3, 2.0, 0.1)
    assert [t.suspend for t in acme.throttle] == [0.0, 30.0]
    assert load_providers(f).for_domain("mx.acme.test") == acme
    for text, error in (
        ('[provider.x]\ndomain = ["a"]\n', "unknown key 'domain'"),
        ("[provider.x]\ndecrease = 2\n", "decrease is a factor"),
        ('[provider.x]\nrate = "fast"\n', "bad rate"),
        ('[provider.x]\nthrottle = [""]\n', "empty throttling pattern"),
        ("[provider.X]\n", "lowercase"),
        ("[providers.x]\n", "unknown section 'providers'"),
        ("[provider.x\n", "not valid TOML"),
    ):
        f.write_text(text)
        with pytest.raises(ConfigError, match=error):
            load_providers(f)
    with pytest.raises(ConfigError, match="cannot read"):
        load_providers(tmp_path / "missing.toml")


def test_the_rate_is_cut_once_per_round_and_climbs_back_after_quiet_periods() -> None:
    p = Provider("g", rate=None, decrease=0.5, increase=0.1, quiet=10.0, floor=0.5)
    t = Throttle.parse("421 4.7.0")
    s = Adapted.start(p)
    assert s.rate is None
    # not limited yet: cut from the rate seen (40/s)
    s = cut(s, p, now=100.0, sent_at=99.9, seen=40.0, throttle=t, reply="421 4.7.0 slow")
    assert (s.rate, s.too_fast, s.reply) == (20.0, 40.0, "421 4.7.0 slow")
    # replies to messages sent before that cut change nothing more
    again = cut(s, p, now=100.2, sent_at=99.95, seen=40.0, throttle=t, reply="421 4.7.0 slow")
    assert again.rate == 20.0 and again.reply_at == 100.2
    # nor do replies within the cooldown (2 s): the provider still counts what came before
    soon = cut(again, p, now=101.9, sent_at=101.5, seen=20.0, throttle=t, reply="421")
    assert soon.rate == 20.0
    s = cut(soon, p, now=103.0, sent_at=102.5, seen=20.0, throttle=t, reply="421")
    assert (s.rate, s.too_fast) == (10.0, 20.0)
    assert climb(s, p, 107.0) == s  # not quiet long enough
    s = climb(s, p, 113.0)
    assert s.rate == 12.0  # + 0.1 x 20 (the rate that was too fast)
    assert climb(s, p, 117.0) == s  # one step per quiet period
    for now in range(123, 400, 10):
        s = climb(s, p, float(now))
    assert s.rate is None and s.too_fast is None  # back to twice too fast: lifted
    # never below the floor
    low = Adapted(rate=0.6)
    assert cut(low, p, now=1.0, sent_at=0.5, seen=0, throttle=t, reply="x").rate == 0.5


def test_a_ceiling_is_where_the_climb_stops_and_a_suspension_holds() -> None:
    p = Provider("y", rate=10.0, quiet=1.0)
    t = Throttle.parse("TSS05", suspend=300.0)
    s = cut(Adapted.start(p), p, now=50.0, sent_at=49.0, seen=99.0, throttle=t, reply="TSS05")
    assert s.rate == 5.0 and s.suspended(349.0) and not s.suspended(350.0)
    for now in range(352, 380):
        s = climb(s, p, float(now))
    assert s.rate == 10.0


async def test_admissions_keep_to_connections_and_rate_and_never_block() -> None:
    rules = Providers([Provider("g", domains=("gmail.com",), rate=4.0, connections=2)])
    now = [1000.0]
    shaper = Shaper(rules, lanes=LocalLanes(lambda: now[0]), horizon=1.0, clock=lambda: now[0])
    requeued: list[Job] = []
    shaper.requeue = requeued.append
    jobs = [job("u@gmail.com", i) for i in range(8)]
    other = job("u@example.com")
    assert await shaper.admit(other) is GO  # no provider: only the usual limits
    assert await shaper.admit(jobs[0]) is GO
    assert await shaper.admit(jobs[1]) is HELD  # the next slot is 0.25 s off: held here
    now[0] += 0.25
    await asyncio.sleep(0.3)
    assert requeued == [jobs[1]]
    assert await shaper.admit(jobs[1]) is GO  # its slot was reserved: no second one
    assert await shaper.admit(jobs[2]) is HELD  # both connections busy: waits for one
    shaper.done(jobs[0].id, sent=True)
    assert requeued[-1] is jobs[2]
    # slots further off than the horizon go back to the queue, due then
    shaper.done(jobs[1].id)
    held = [await shaper.admit(j) for j in jobs[3:8]]
    assert any(isinstance(h, Hold) for h in held)
    hold = next(h for h in held if isinstance(h, Hold))
    assert hold.until > now[0] + 1.0 and "g at 4/s" in hold.reply
    assert {j.id for j in shaper.release_all()} <= {j.id for j in jobs}
    await shaper.close()


async def test_a_throttling_reply_cuts_only_its_provider_and_may_suspend_it() -> None:
    rules = Providers(
        [
            Provider("g", domains=("gmail.com",), throttle=(Throttle.parse("421 4.7.0"),)),
            Provider("y", domains=("yahoo.com",), throttle=(Throttle.parse("TSS05", 60.0),)),
        ]
    )
    shaper = Shaper(rules)
    g, y, o = job("a@gmail.com"), job("b@yahoo.com"), job("c@example.com")
    for j in (g, y, o):
        assert await shaper.admit(j) is GO
    busy = ReplyError("busy", code=450, enhanced="4.2.0", stage=Stage.RCPT)
    assert not shaper.slows(g.id, busy) and await shaper.throttled(g.id, busy) is None
    slow = ReplyError("Try again later", code=421, enhanced="4.7.0", stage=Stage.RCPT)
    assert shaper.slows(g.id, slow) and not shaper.slows(o.id, slow)
    assert await shaper.throttled(g.id, slow) == "g"
    every_rcpt = ReplyError(
        "no", code=421, stage=Stage.RCPT, refused={"b@yahoo.com": "421 [TSS05] go away"}
    )
    assert await shaper.throttled(y.id, every_rcpt) == "y"
    states = {s.name: s for s in shaper.states()}
    assert states["g"].rate is not None and states["g"].throttled == 1
    assert states["y"].suspended_for > 50 and "TSS05" in states["y"].last_reply
    for j in (g, y, o):
        shaper.done(j.id)
    later = await shaper.admit(job("d@yahoo.com"))
    assert isinstance(later, Hold) and "suspended" in later.reply
    assert await shaper.admit(job("e@example.com")) is GO  # others are not slowed


async def test_adapted_rates_are_shared_by_every_worker_through_redis(redis_url: str) -> None:
    from mailspool.delivery.shared_lanes import RedisLanes

    url = redis_url  # a prefix of its own per test
    rules = Providers([Provider("g", domains=("gmail.com",), throttle=(Throttle.parse("421"),))])
    one, two = Shaper(rules, lanes=RedisLanes(url)), Shaper(rules, lanes=RedisLanes(url))
    a, b = job("a@gmail.com", 1), job("b@gmail.com", 2)
    assert await one.admit(a) is GO and await two.admit(b) is GO
    slow = ReplyError("slow down", code=421, stage=Stage.RCPT)
    assert await one.throttled(a.id, slow) == "g"
    assert await two.throttled(b.id, slow) == "g"  # sent before the cut: no second cut
    await two.refresh()
    (st1,), (st2,) = one.states(), two.states()
    assert st1.rate is not None and st1.rate == st2.rate and st2.last_reply == "421 slow down"
    # one schedule for the cluster: two workers' slots are spaced by the one rate
    assert st1.rate is not None
    waits = [await lanes.reserve("g", st1.rate, 60.0) for lanes in (one.lanes, two.lanes) * 2]
    gaps = [b - a for a, b in itertools.pairwise(waits)]
    assert all(math.isclose(g, 1 / st1.rate, abs_tol=0.05) for g in gaps), (waits, st1.rate)
    far = await one.lanes.reserve("g", st1.rate, 0.0)
    assert far < 0  # not taken: further off than the horizon
    await one.close()
    await two.close()


async def test_the_metrics_show_each_providers_rate_suspension_and_throttles() -> None:
    from prometheus_client import generate_latest

    from mailspool.observe.metrics import Metrics

    rules = Providers(
        [
            Provider("g", domains=("gmail.com",), throttle=(Throttle.parse("421 4.7.0"),)),
            Provider("y", domains=("yahoo.com",), throttle=(Throttle.parse("TSS05", 60.0),)),
        ]
    )
    shaper = Shaper(rules)
    metrics = Metrics()
    metrics.watch_shaper(shaper)
    observer = metrics.observer()
    g, y = job("a@gmail.com"), job("b@yahoo.com")
    assert await shaper.admit(g) is GO and await shaper.admit(y) is GO
    slow = ReplyError("slow", code=421, enhanced="4.7.0", stage=Stage.RCPT)
    assert await shaper.throttled(g.id, slow) == "g"
    observer.throttled(g, "g", slow)
    tss = ReplyError("[TSS05] go away", code=421, stage=Stage.RCPT)
    assert await shaper.throttled(y.id, tss) == "y"
    text = generate_latest(metrics.registry).decode()
    rate = next(s for s in shaper.states() if s.name == "g").rate
    assert f'mailspool_provider_rate{{provider="g"}} {rate}' in text
    assert 'mailspool_provider_suspended{provider="y"} 1.0' in text
    assert 'mailspool_provider_suspended{provider="g"} 0.0' in text
    assert 'mailspool_provider_throttles_total{provider="g"} 1.0' in text


async def test_a_lane_remembers_only_the_last_seconds_of_admissions() -> None:
    rules = Providers([Provider("g", domains=("gmail.com",))])
    now = [0.0]
    shaper = Shaper(rules, clock=lambda: now[0])
    for i in range(1000):  # 100 a second for 10 s
        now[0] = i / 100
        j = job("a@gmail.com", i)
        assert await shaper.admit(j) is GO
        shaper.done(j.id, sent=True)
    (lane,) = shaper._lanes.values()
    assert len(lane.admitted) <= 501 and lane.seen_rate(now[0]) == pytest.approx(100, rel=0.01)
    assert shaper.states()[0].sent == 1000
