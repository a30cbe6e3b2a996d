"""``POST /v1/campaigns/{campaign}/pause|resume|cancel`` on a running ``mailspool serve``
with no worker loops (what is posted stays queued): idempotent answers, the campaign's
state and counts in ``GET /v1/campaigns/{campaign}``, the metrics' queue depth, and the
refusals (no token, no such campaign, a name no command could give, a cancelled one)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.api import ApiServer, message


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    srv = ApiServer(tmp_path_factory.mktemp("campaigns"), "--workers", "0")
    yield srv
    assert srv.stop() == 0


@pytest.fixture
def api(server: ApiServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def post(api: httpx.Client, campaign: str, n: int) -> None:
    msgs = [message(f"u{i}@example.com", campaign=campaign) for i in range(n)]
    r = api.post("/v1/messages", json={"messages": msgs})
    assert r.status_code == 202, r.text


def test_pause_resume_cancel_are_idempotent_and_the_campaign_shows_them(
    api: httpx.Client,
) -> None:
    post(api, "api-spring", 4)
    for _ in range(2):
        r = api.post("/v1/campaigns/api-spring/pause")
        assert r.status_code == 200, r.text
        assert r.json() == {"campaign": "api-spring", "state": "paused", "cancelled": 0}
    got = api.get("/v1/campaigns/api-spring").json()
    assert got["state"] == "paused" and got["counts"]["queued"] == 4
    for _ in range(2):
        r = api.post("/v1/campaigns/api-spring/resume")
        assert r.status_code == 200 and r.json()["state"] == "active"
    assert api.get("/v1/campaigns/api-spring").json()["state"] == "active"
    r = api.post("/v1/campaigns/api-spring/cancel")
    assert r.json() == {"campaign": "api-spring", "state": "cancelled", "cancelled": 4}
    r = api.post("/v1/campaigns/api-spring/cancel")
    assert r.status_code == 200 and r.json()["cancelled"] == 0
    got = api.get("/v1/campaigns/api-spring").json()
    assert got["state"] == "cancelled" and got["pending"] == 0 and got["eta_s"] == 0
    assert got["counts"]["cancelled"] == 4 and got["counts"]["sent"] == 0
    for action in ("pause", "resume"):
        r = api.post(f"/v1/campaigns/api-spring/{action}")
        assert r.status_code == 409 and "cancelled" in r.json()["detail"]
    metrics = api.get("/metrics").text
    assert 'mailspool_queue_depth{state="cancelled"} 4.0' in metrics


def test_refusals(api: httpx.Client, server: ApiServer) -> None:
    post(api, "api-known", 1)
    with httpx.Client(base_url=server.url) as anon:
        r = anon.post("/v1/campaigns/api-known/pause")
        assert r.status_code == 401
    for action in ("pause", "resume", "cancel"):
        r = api.post(f"/v1/campaigns/api-unknown/{action}")
        assert r.status_code == 404 and r.json() == {"detail": "no such campaign"}
        for bad in ("a:b", ".hidden", "x" * 101, "sp%20ace"):
            r = api.post(f"/v1/campaigns/{bad}/{action}")
            assert r.status_code == 422, (bad, r.text)
            assert r.json()["errors"][0]["field"] == "path.campaign"
    assert api.get("/v1/campaigns/api-known").json()["state"] == "active"


def test_the_routes_are_in_the_openapi_document(server: ApiServer) -> None:
    doc = httpx.get(f"{server.url}/openapi.json").json()
    for action in ("pause", "resume", "cancel"):
        op = doc["paths"][f"/v1/campaigns/{{campaign}}/{action}"]["post"]
        assert {"200", "401", "404", "409", "422"} <= set(op["responses"])
        (param,) = op["parameters"]
        assert param["name"] == "campaign" and param["schema"]["pattern"].startswith("^[A-Za-z0-9]")
