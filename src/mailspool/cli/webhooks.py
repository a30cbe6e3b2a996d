"""``mailspool webhooks list|test|retry``: the webhook endpoints' delivery state in the
job store, a signed test request, and dead-lettered events delivered again.

Endpoints are those of ``--webhook`` (or MAILSPOOL_WEBHOOK / mailspool.toml) and, for
``list`` and ``retry``, any the job store holds state for (by name: the URL with its
secrets redacted). Delivering needs the URL itself, so ``test`` and the delivery part of
``retry`` take the configured endpoints only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from mailspool.cli.exits import ExitCode
from mailspool.config import Settings, parse_duration
from mailspool.errors import ConfigError
from mailspool.queue import Queue
from mailspool.webhooks.backlog import backlog
from mailspool.webhooks.dispatcher import Dispatcher
from mailspool.webhooks.endpoints import WebhookEndpoint, parse_webhook, parse_webhooks
from mailspool.webhooks.http import HttpClient, HttpError
from mailspool.webhooks.payload import iso_time
from mailspool.webhooks.run import WebhookRun
from mailspool.webhooks.signing import WebhookSecrets
from mailspool.wiring import dispatch_settings, open_queue


async def run(args: argparse.Namespace, settings: Settings) -> ExitCode:
    configured = parse_webhooks(settings.webhook)
    if args.action == "test":
        return await _test(args, settings, _chosen(args, configured))
    async with open_queue(settings) as queue:
        if args.action == "list":
            return await _list(queue, configured, as_json=settings.json_output)
        return await _retry(args, settings, queue, configured)


def _chosen(args: argparse.Namespace, configured: list[WebhookEndpoint]) -> list[WebhookEndpoint]:
    """The endpoint the command line names (a URL, or a configured one's name), or every
    configured one; ConfigError when there is none."""
    given = getattr(args, "endpoint", None)
    if given is None:
        if not configured:
            raise ConfigError("no webhook endpoint: give --webhook URL (or MAILSPOOL_WEBHOOK)")
        return configured
    by_name = [ep for ep in configured if given in (ep.name, ep.url)]
    if by_name:
        return by_name
    if "://" in given:
        try:
            return [parse_webhook(given)]
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    raise ConfigError(f"no configured webhook endpoint is named {given[:200]!r}")


async def _names(queue: Queue, configured: list[WebhookEndpoint]) -> list[str]:
    stored = [e.name for e in await queue.events.endpoints()]
    return list(dict.fromkeys([ep.name for ep in configured] + stored))


async def _list(queue: Queue, configured: list[WebhookEndpoint], *, as_json: bool) -> ExitCode:
    types = {ep.name: sorted(ep.types) if ep.types else "all" for ep in configured}
    rows: list[dict[str, Any]] = []
    for name in await _names(queue, configured):
        b = await backlog(queue.events, name)
        last = await queue.events.pending(name, dead=True, limit=1) or await queue.events.pending(
            name, dead=False, limit=1
        )
        rows.append(
            {
                "endpoint": name,
                "configured": name in types,
                "types": types.get(name, "all"),
                "unread": b.unread,
                "retrying": b.retrying,
                "dead": b.dead,
                "last_error": last[0].error if last else "",
            }
        )
    if as_json:
        print(json.dumps(rows), flush=True)
        return ExitCode.OK
    if not rows:
        print("no webhook endpoints (give --webhook URL to send, worker or serve)")
    for r in rows:
        note = "" if r["configured"] else "  (not configured here)"
        print(f"{r['endpoint']}{note}")
        types_text = r["types"] if r["types"] == "all" else ",".join(r["types"])
        print(
            f"  events: {types_text}; unread {r['unread']}, retrying {r['retrying']},"
            f" dead {r['dead']}"
        )
        if r["last_error"]:
            print(f"  last error: {r['last_error']}")
    return ExitCode.OK


async def _test(
    args: argparse.Namespace, settings: Settings, endpoints: list[WebhookEndpoint]
) -> ExitCode:
    secrets = WebhookSecrets.from_environment()
    now = time.time()
    rows = []
    for ep in endpoints:
        msg_id = f"evt_test_{int(now * 1000):x}"
        body = json.dumps(
            {
                "type": "test",
                "timestamp": iso_time(now),
                "data": {
                    "event_id": msg_id,
                    "endpoint": ep.name,
                    "note": "mailspool webhooks test",
                },
            },
            separators=(",", ":"),
        ).encode()
        client = HttpClient(ep.url, timeout=settings.webhook_timeout)
        try:
            status = await client.post(body, secrets.headers(msg_id, int(now), body))
            result = {"endpoint": ep.name, "status": status, "ok": 200 <= status < 300}
        except HttpError as exc:
            result = {"endpoint": ep.name, "status": None, "ok": False, "error": str(exc)}
        finally:
            await client.aclose()
        rows.append(result)
    if settings.json_output:
        print(json.dumps(rows), flush=True)
    else:
        for r in rows:
            said = f"HTTP {r['status']}" if r["status"] is not None else r["error"]
            print(f"{r['endpoint']}: {said}{'' if r['ok'] else '  FAILED'}")
    return ExitCode.OK if all(r["ok"] for r in rows) else ExitCode.SOME_FAILED


async def _retry(
    args: argparse.Namespace, settings: Settings, queue: Queue, configured: list[WebhookEndpoint]
) -> ExitCode:
    timeout = parse_duration(args.timeout)
    given = args.endpoint
    names = await _names(queue, configured)
    if given is not None:
        # an endpoint's name is its URL redacted: a URL names one whether or not it has state
        name = WebhookEndpoint(given).name if "://" in given else given
        if name not in names and "://" not in given:
            raise ConfigError(f"no webhook endpoint is named {given[:200]!r}")
        names = [name]
    revived = {n: await queue.events.revive(n) for n in names}
    deliverable = [ep for ep in configured if ep.name in revived]
    left: dict[str, Any] = {}
    if deliverable and sum(revived.values()):
        dispatcher = Dispatcher(
            queue.events,
            deliverable,
            WebhookSecrets.from_environment(),
            dispatch_settings(settings),
        )
        async with WebhookRun(queue.events, deliverable, dispatcher=dispatcher) as hooks:
            left = await hooks.drain(timeout)
    rows = []
    for n, count in revived.items():
        b = left.get(n)
        rows.append(
            {
                "endpoint": n,
                "revived": count,
                "waiting": b.waiting if b else count,
                "dead": b.dead if b else 0,
            }
        )
    if settings.json_output:
        print(json.dumps(rows), flush=True)
    else:
        for r in rows:
            print(
                f"{r['endpoint']}: {r['revived']} dead-lettered events queued again;"
                f" {r['waiting']} still waiting, {r['dead']} dead"
            )
            if r["waiting"] and not any(ep.name == r["endpoint"] for ep in deliverable):
                print(
                    "  (not configured here: the next worker, serve or send with it delivers them)"
                )
    ok = all(r["waiting"] == 0 and r["dead"] == 0 for r in rows)
    if not ok:
        print(
            "mailspool: some events were not delivered; see `mailspool webhooks list`",
            file=sys.stderr,
        )
    return ExitCode.OK if ok else ExitCode.SOME_FAILED
