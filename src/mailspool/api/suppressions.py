"""The suppression list over HTTP: ``GET``, ``POST`` and ``DELETE /v1/suppressions``,
with the bearer token, as ``mailspool suppress`` on the command line.

An entry names an address or a whole domain (``@example.com``) on one list, or on every
list when it names none (global). ``POST`` adds entries, each with a reason, a source and
an optional expiry; an entry already there that lasts longer stays as it is
(queue/suppression.py). ``DELETE`` removes the entries of some addresses on one list, or
the global ones. ``GET`` pages through them in address order: ``next`` is the ``after``
of the next page. Every invalid field is reported (422), and then nothing is changed.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mailspool.api.auth import authorized
from mailspool.api.bodies import LIST_PATTERN, FieldError
from mailspool.api.intake import error, pydantic_errors
from mailspool.api.routes import AUTH, BODY, JSON_BODY, Svc, invalid, json_body, not_utf8
from mailspool.config import parse_expiry
from mailspool.intake.suppression_csv import format_time
from mailspool.message.optout import entry_key
from mailspool.queue.suppression import (
    ALL_LISTS,
    MAX_PAGE,
    MAX_SOURCE_CHARS,
    Reason,
    Suppression,
)

MAX_ENTRIES = 10_000
MAX_ADDRESS = 400
#: addresses in a DELETE's query: its request line stays within what the server reads
MAX_QUERY_ADDRESSES = 5
DEFAULT_LIMIT = 100
API_SOURCE = "api"

Address = Annotated[str, Field(max_length=MAX_ADDRESS)]
ListName = Annotated[
    str | None,
    Field(
        default=None,
        alias="list",
        pattern=LIST_PATTERN,
        description="a list name; absent or null: every list (a global entry)",
    ),
]
Expires = Annotated[
    str | None,
    Field(
        default=None,
        max_length=60,
        description="a duration from now (30d, 12h) or an ISO 8601 date or time (UTC"
        " without a zone); absent: never",
    ),
]


class EntryIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    address: Address = Field(description="an address, or @domain for a whole domain")
    list_name: ListName = None
    reason: Reason = Reason.MANUAL
    source: str = Field(default=API_SOURCE, max_length=MAX_SOURCE_CHARS)
    expires: Expires = None


class SuppressionsIn(BaseModel):
    """Either ``entries``, each with its own fields, or ``addresses`` sharing ``list``,
    ``reason``, ``source`` and ``expires``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    entries: list[EntryIn] | None = Field(default=None, min_length=1, max_length=MAX_ENTRIES)
    addresses: list[Address] | None = Field(default=None, min_length=1, max_length=MAX_ENTRIES)
    list_name: ListName = None
    reason: Reason | None = None
    source: str | None = Field(default=None, max_length=MAX_SOURCE_CHARS)
    expires: Expires = None


class RemoveIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    addresses: list[Address] = Field(min_length=1, max_length=MAX_ENTRIES)
    list_name: ListName = None


class SuppressionOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    address: str = Field(description="an address, or @domain: normalised")
    list_name: str | None = Field(alias="list", description="null: a global entry")
    reason: Reason
    source: str
    created_at: str
    expires_at: str | None
    active: bool = Field(description="false once expired")


class SuppressionPage(BaseModel):
    entries: list[SuppressionOut]
    next: str | None = Field(description="the after of the next page; null: the last page")


class Added(BaseModel):
    added: int = Field(description="entries named (one per address and list)")


class Removed(BaseModel):
    removed: int


suppressions = APIRouter(prefix="/v1/suppressions", dependencies=[Depends(authorized)])


def cursor(position: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


def read_cursor(text: str) -> tuple[str, str]:
    """A ``next`` value back as a position; ValueError."""
    try:
        value = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ValueError("not a value of next") from None
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        raise ValueError("not a value of next")
    return value[0], value[1]


def entry_out(e: Suppression, now: float) -> SuppressionOut:
    return SuppressionOut(
        address=e.address,
        list=e.list_name,
        reason=e.reason,
        source=e.source,
        created_at=format_time(e.created_at),
        expires_at=None if e.expires_at is None else format_time(e.expires_at),
        active=e.active(now),
    )


@suppressions.get(
    "",
    response_model=SuppressionPage,
    responses={**AUTH},
    summary="The suppression list, a page at a time",
)
async def list_suppressions(
    svc: Svc,
    list_name: Annotated[
        str | None,
        Query(alias="list", pattern=LIST_PATTERN, description="this list's entries only"),
    ] = None,
    global_only: Annotated[
        bool, Query(alias="global", description="the global entries only")
    ] = False,
    reason: Annotated[Reason | None, Query(description="this reason's entries only")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_LIMIT,
    after: Annotated[
        str | None, Query(max_length=2000, description="the next of the page before")
    ] = None,
) -> Any:
    errors: list[FieldError] = []
    if list_name is not None and global_only:
        errors.append(error(None, "global", "give list or global, not both"))
    position = None
    if after is not None:
        try:
            position = read_cursor(after)
        except ValueError as exc:
            errors.append(error(None, "after", str(exc)))
    if errors:
        return invalid(errors)
    scope = None if global_only else ALL_LISTS if list_name is None else list_name
    page = await svc.q.suppressions.entries(scope, reason, limit, position)
    now = time.time()
    return SuppressionPage(
        entries=[entry_out(e, now) for e in page],
        next=cursor(page[-1].position) if len(page) == limit else None,
    )


def address_errors(values: list[str], field: str) -> list[FieldError]:
    """An error for each value that is not an address or ``@domain``."""
    errors = []
    for i, value in enumerate(values):
        try:
            entry_key(value)
        except ValueError as exc:
            errors.append(error(i, field, str(exc)))
    return errors


def entries_of(body: SuppressionsIn, now: float) -> tuple[list[Suppression], list[FieldError]]:
    """The entries a request names, and an error for each field that is wrong."""
    if (body.entries is None) == (body.addresses is None):
        return [], [error(None, "body", "give entries or addresses (one of them)")]
    errors: list[FieldError] = []
    if body.entries is not None:
        for name in ("list_name", "reason", "source", "expires"):
            if name in body.model_fields_set:
                field = "list" if name == "list_name" else name
                errors.append(error(None, field, "not allowed with entries (each has its own)"))
        errors += address_errors([e.address for e in body.entries], "address")
        out = []
        for i, e in enumerate(body.entries):
            at = None
            if e.expires is not None:
                try:
                    at = parse_expiry(e.expires, now)
                except ValueError as exc:
                    errors.append(error(i, "expires", str(exc)))
            out.append(Suppression(e.address, e.list_name, e.reason, e.source, now, at))
        return out, errors
    assert body.addresses is not None
    shared = None
    if body.expires is not None:
        try:
            shared = parse_expiry(body.expires, now)
        except ValueError as exc:
            errors.append(error(None, "expires", str(exc)))
    errors += address_errors(body.addresses, "addresses")
    reason, source = body.reason or Reason.MANUAL, body.source or API_SOURCE
    return [
        Suppression(a, body.list_name, reason, source, now, shared) for a in body.addresses
    ], errors


@suppressions.post(
    "",
    response_model=Added,
    responses={**AUTH, **BODY},
    summary="Suppress addresses or domains (an entry there that lasts longer stays)",
    dependencies=JSON_BODY,
)
async def add_suppressions(svc: Svc, body: SuppressionsIn) -> Any:
    entries, errors = entries_of(body, time.time())
    if errors:
        return invalid(errors)
    try:
        added = await svc.q.suppressions.add(entries)
    except ValueError as exc:
        return invalid([error(None, "body", str(exc))])
    svc.log.info("suppressions added", count=len(added))
    return Added(added=len(added))


REMOVE_BODY = {
    "requestBody": {
        "required": False,
        "content": {"application/json": {"schema": RemoveIn.model_json_schema(by_alias=True)}},
    }
}


@suppressions.delete(
    "",
    response_model=Removed,
    responses={**AUTH, **BODY},
    summary="Remove the entries of addresses or domains on one list (or the global ones)",
    openapi_extra=REMOVE_BODY,
)
async def remove_suppressions(
    request: Request,
    svc: Svc,
    address: Annotated[
        list[Annotated[str, Field(max_length=254)]] | None,
        Query(
            max_length=MAX_QUERY_ADDRESSES,
            description="an address or @domain (repeatable; more go in the body)",
        ),
    ] = None,
    list_name: Annotated[
        str | None,
        Query(alias="list", pattern=LIST_PATTERN, description="absent: the global entries"),
    ] = None,
) -> Any:
    raw = await request.body()
    if raw.strip():
        await json_body(request)  # 415 unless JSON
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return not_utf8()
        if address is not None or list_name is not None:
            return invalid([error(None, "body", "give the addresses in the body or the query")])
        try:
            body = RemoveIn.model_validate_json(raw)
        except ValidationError as exc:
            return invalid(pydantic_errors(exc, None))
        addresses, list_name = body.addresses, body.list_name
    elif address:
        addresses = address
    else:
        return invalid([error(None, "addresses", "name at least one address or @domain")])
    bad = address_errors(addresses, "addresses")
    if bad:
        return invalid(bad)
    removed = await svc.q.suppressions.remove(addresses, list_name)
    svc.log.info("suppressions removed", count=removed, list=list_name)
    return Removed(removed=removed)
