"""Attachments posted to ``mailspool serve`` (a subprocess, as a user runs it): each file
stored once in the job store however many messages share it (SQLite and Redis), and the
size limits: per file, per request, and the rest of the body (413 naming the file)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailspool.queue import make_queue
from tests.support.api import PDF, ApiServer, attachment, message

# -- stored once ----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_a_batch_of_100_sharing_a_file_stores_it_once(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    queue = request.getfixturevalue("redis_url") if backend == "redis" else None
    srv = ApiServer(tmp_path, "--workers", "0", queue=queue)
    batch = {
        "messages": [message(f"p{i}@example.net") for i in range(100)],
        "attachments": [attachment("terms.pdf", PDF)],
    }
    try:
        with srv.client() as c:
            r = c.post("/v1/messages", json=batch)
            assert r.status_code == 202, r.text
            ids = r.json()["ids"]
            # the same file in a form, for messages of another request: no second copy
            r = c.post(
                "/v1/messages",
                data={"message": json.dumps(message("again@example.net"))},
                files=[("attachment", ("copy.pdf", PDF, "application/pdf"))],
            )
            assert r.status_code == 202, r.text
    finally:
        srv.stop()
    stored = read_store(backend, queue or f"sqlite:///{srv.db}", [*ids, r.json()["id"]])
    digests = {ref.digest for refs in stored["refs"] for ref in refs}
    assert len(digests) == 1 and stored["blob"] == PDF
    assert [[ref.filename for ref in refs] for refs in stored["refs"]] == [["terms.pdf"]] * 100 + [
        ["copy.pdf"]
    ]
    assert all(PDF not in m for m in stored["messages"])  # the jobs hold a reference only
    if backend == "sqlite":
        with sqlite3.connect(srv.db) as db:
            assert db.execute("SELECT count(*), sum(length(data)) FROM blobs").fetchone() == (
                1,
                len(PDF),
            )
    else:
        import redis

        assert queue is not None
        base, _, prefix = queue.partition("?prefix=")
        with redis.Redis.from_url(base) as client:
            assert len(list(client.scan_iter(match=f"{prefix}:blob:*"))) == 1


def read_store(backend: str, url: str, ids: list[str]) -> dict[str, Any]:
    """Each job's attachment references and stored message, and the blob of the first,
    read through the store's own API."""

    async def read() -> dict[str, Any]:
        q = make_queue(url, None)
        await q.open()
        try:
            jobs = [await q.get(i) for i in ids]
            assert all(j is not None for j in jobs)
            refs = [j.attachments for j in jobs if j is not None]
            blob = await q.get_blob(refs[0][0].digest)
            return {"refs": refs, "blob": blob, "messages": [j.message for j in jobs if j]}
        finally:
            await q.close()

    return asyncio.run(read())


# -- size limits --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    srv = ApiServer(
        tmp_path_factory.mktemp("small"), "--workers", "0", "--max-body", "65536",
        "--max-attachment", "1000", "--max-request-attachments", "2500",
    )  # fmt: skip
    with srv.client() as c:
        yield c
    srv.stop()


def too_large(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 413, r.text
    body: dict[str, Any] = r.json()
    return body


def test_a_file_over_the_limit_per_file_is_413_naming_it(small: httpx.Client) -> None:
    ok = message(attachments=[attachment("fits.bin", b"x" * 1000)])
    assert small.post("/v1/messages", json=ok).status_code == 202
    big = message(attachments=[attachment("a.txt", b"a"), attachment("big.bin", b"x" * 1001)])
    body = too_large(small.post("/v1/messages", json=big))
    assert "big.bin" in body["detail"]
    (e,) = body["errors"]
    assert (e["index"], e["field"]) == (0, "attachments.1")
    assert "'big.bin' is 1001 bytes, over the limit of 1000 per file" in e["reason"]
    r = small.post(
        "/v1/messages",
        data={"message": json.dumps(message())},
        files=[("attachment", ("huge.pdf", b"%" * 1001, "application/pdf"))],
    )
    (e,) = too_large(r)["errors"]
    assert (e["index"], e["field"]) == (None, "attachment.0") and "huge.pdf" in e["reason"]


def test_files_over_the_limit_per_request_are_413_naming_the_one_past_it(
    small: httpx.Client,
) -> None:
    batch = {
        "messages": [message(attachments=[attachment("a.bin", b"a" * 900)]), message()],
        "attachments": [attachment("b.bin", b"b" * 900), attachment("c.bin", b"c" * 900)],
    }
    (e,) = too_large(small.post("/v1/messages", json=batch))["errors"]
    assert (e["index"], e["field"]) == (None, "attachments.1")
    assert "'c.bin' takes the request's attachments to 2700 bytes" in e["reason"]
    assert "2500 per request" in e["reason"]


def test_the_rest_of_the_body_keeps_its_own_limit(small: httpx.Client) -> None:
    body = message(text="x" * 70_000, attachments=[attachment("a.txt", b"a")])
    assert "besides its attachments" in too_large(small.post("/v1/messages", json=body))["detail"]
    # a body larger than any the limits allow is refused before it is read
    r = small.post(
        "/v1/messages",
        content=b"{" + b" " * 200_000 + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert too_large(r)["detail"].startswith("request body over ")
    # other routes keep --max-body alone
    r = small.put("/v1/templates/t", json={"text": "x" * 70_000})
    assert r.status_code == 413
