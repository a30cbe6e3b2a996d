"""The webhook HTTP client against real servers on loopback: keep-alive, the response
forms servers use, failures with a reason, TLS with verified certificates."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable

import pytest
import trustme

from mailspool.testing.webhooks import WebhookReceiver
from mailspool.webhooks.http import HttpClient, HttpError


async def test_posts_over_one_kept_alive_connection() -> None:
    with WebhookReceiver(statuses=[200, 503]) as rx:
        client = HttpClient(rx.url + "?a=1")
        assert await client.post(b'{"n":1}', {"webhook-id": "evt_1"}) == 200
        assert await client.post(b'{"n":2}', {"webhook-id": "evt_2"}) == 503
        assert await client.post(b'{"n":3}', {}) == 204
        await client.aclose()
    first, second, _ = rx.requests
    assert first.method == "POST" and first.path == "/hook?a=1"
    assert first.headers["content-type"] == "application/json"
    assert first.headers["webhook-id"] == "evt_1" and first.body == b'{"n":1}'
    assert second.body == b'{"n":2}'


Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], object]


@pytest.fixture
async def raw() -> AsyncIterator[Callable[[Answer], object]]:
    servers: list[asyncio.Server] = []

    async def start(answer: Answer) -> str:
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                await answer(r, w)  # type: ignore[misc]
            finally:
                w.close()

        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(srv)
        return f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}/x"

    yield start  # type: ignore[misc]
    for s in servers:
        s.close()


async def read_request(r: asyncio.StreamReader) -> bytes:
    head = await r.readuntil(b"\r\n\r\n")
    n = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    return await r.readexactly(n)


async def test_a_chunked_response_keeps_the_connection(raw) -> None:  # type: ignore[no-untyped-def]
    connections = 0

    async def answer(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        for _ in range(2):
            await read_request(r)
            w.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            w.write(b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n")
            w.write(b"5\r\nhello\r\n0\r\n\r\n")
        await r.read()

    client = HttpClient(await raw(answer))
    assert await client.post(b"{}", {}) == 202
    assert await client.post(b"{}", {}) == 202
    await client.aclose()
    assert connections == 1


async def test_a_closed_idle_connection_is_replaced(raw) -> None:  # type: ignore[no-untyped-def]
    async def answer(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await w.drain()
        w.close()  # the server closes the kept-alive connection

    client = HttpClient(await raw(answer))
    assert await client.post(b"{}", {}) == 204
    await asyncio.sleep(0.05)
    assert await client.post(b"{}", {}) == 204
    await client.aclose()


async def test_requests_are_pipelined_on_one_connection_and_answered_in_order(raw) -> None:  # type: ignore[no-untyped-def]
    connections, seen = 0, []

    async def answer(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                body = await read_request(r)
            except asyncio.IncompleteReadError:
                return
            seen.append(body)
            w.write(b"HTTP/1.1 %s X\r\nContent-Length: 0\r\n\r\n" % body[1:4])

    client = HttpClient(await raw(answer), connections=1)
    requests = [client.request(b"{%d}" % (200 + i), {}) for i in range(40)]
    assert await client.post_many(requests) == [200 + i for i in range(40)]
    await client.aclose()
    assert connections == 1 and client.pipeline > 1
    assert seen == [b"{%d}" % (200 + i) for i in range(40)]


async def test_a_server_that_drops_pipelined_requests_gets_them_one_at_a_time(raw) -> None:  # type: ignore[no-untyped-def]
    taken = 0

    async def answer(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal taken
        await read_request(r)  # one request, then the connection ends, unannounced
        taken += 1
        w.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await w.drain()

    client = HttpClient(await raw(answer), connections=2)
    requests = [client.request(b"{}", {}) for _ in range(10)]
    assert await client.post_many(requests) == [204] * 10
    await client.aclose()
    assert client.pipeline == 1 and taken == 10


async def test_connection_close_after_some_responses_sends_the_rest_again(raw) -> None:  # type: ignore[no-untyped-def]
    async def answer(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        for _ in range(3):
            await read_request(r)
            w.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        await w.drain()

    client = HttpClient(await raw(answer), connections=1)
    requests = [client.request(b"{}", {}) for _ in range(9)]
    assert await client.post_many(requests) == [204, 204, 204, 200] * 2 + [204]
    await client.aclose()
    assert client.pipeline > 1  # a server may close when it says so


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (b"SMTP 220 hello\r\n\r\n", "not an HTTP response"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "cut short"),
        (b"", "closed the connection without a response"),
    ],
)
async def test_bad_responses_fail_with_a_reason(raw, reply: bytes, error: str) -> None:  # type: ignore[no-untyped-def]
    async def answer(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(reply)
        await w.drain()
        w.close()

    client = HttpClient(await raw(answer))
    with pytest.raises(HttpError, match=error):
        await client.post(b"{}", {})


async def test_a_redirect_is_a_status_not_followed(raw) -> None:  # type: ignore[no-untyped-def]
    async def answer(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 301 Moved\r\nLocation: http://elsewhere/\r\nContent-Length: 0\r\n\r\n")
        await r.read()

    client = HttpClient(await raw(answer))
    assert await client.post(b"{}", {}) == 301
    await client.aclose()


async def test_no_response_in_time(raw) -> None:  # type: ignore[no-untyped-def]
    async def answer(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.read()

    client = HttpClient(await raw(answer), timeout=0.2)
    with pytest.raises(HttpError, match=r"no response within 0\.2s"):
        await client.post(b"{}", {})


async def test_nobody_listening() -> None:
    with WebhookReceiver() as rx:
        url = rx.url
    with pytest.raises(HttpError, match="cannot connect"):
        await HttpClient(url).post(b"{}", {})


async def test_tls_verifies_the_certificate(raw) -> None:  # type: ignore[no-untyped-def]
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            await read_request(r)
            w.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await w.drain()
            await r.read()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            w.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    url = f"https://127.0.0.1:{srv.sockets[0].getsockname()[1]}/x"
    try:
        trusting = ssl.create_default_context()
        ca.configure_trust(trusting)
        client = HttpClient(url, tls=trusting)
        assert await client.post(b"{}", {}) == 204
        await client.aclose()
        with pytest.raises(HttpError, match="TLS"):  # the default trust store: refused
            await HttpClient(url).post(b"{}", {})
    finally:
        srv.close()
