"""Named templates, stored in the queue's blob store so every process sharing the queue
sees them, and rendered in a Jinja2 sandbox (their authors may not be trusted).

Blobs never change once written (``put_blob`` does not overwrite), so each version is a
blob of its own, ``template:NAME:N``; the latest is the highest N present.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

from mailspool.config import Settings
from mailspool.errors import TemplateError
from mailspool.message.render import Renderer, Template
from mailspool.queue import Blobs

#: how often a process looks for a version that another process stored
RECHECK_S = 1.0


@dataclass
class StoredTemplate:
    name: str
    version: int
    text: str
    html: str | None
    created_at: float
    renderer: Renderer


def parse_template(name: str, text: str, html: str | None) -> Template:
    """Parse in the sandbox; raises TemplateError. ``Attachment:`` lines name files on this
    server, which an API client has no business reading: refused."""
    tpl = Template.parse(
        text, html_text=html, name=f"template {name}", html_name=f"template {name} (html)"
    )
    if tpl.attachments:
        raise TemplateError(f"template {name}: Attachment: lines are not allowed over the API")
    return tpl


class TemplateStore:
    def __init__(self, queue: Blobs, settings: Settings) -> None:
        self.queue = queue
        self.settings = settings
        self._cache: dict[str, tuple[float, StoredTemplate]] = {}
        self._lock = asyncio.Lock()

    @staticmethod
    def key(name: str, version: int) -> str:
        return f"template:{name}:{version}"

    def _load(self, name: str, version: int, blob: bytes) -> StoredTemplate:
        data = json.loads(blob)
        tpl = parse_template(name, data["text"], data.get("html"))
        # --from/--subject of the server are defaults, as for a CSV (operator-given, trusted)
        renderer = Renderer.build(tpl, self.settings.from_addr, self.settings.subject)
        return StoredTemplate(
            name, version, data["text"], data.get("html"), data["created_at"], renderer
        )

    async def _newer(self, name: str, known: StoredTemplate | None) -> StoredTemplate | None:
        latest = known
        version = known.version if known else 0
        while True:
            blob = await self.queue.get_blob(self.key(name, version + 1))
            if blob is None:
                return latest
            version += 1
            latest = self._load(name, version, blob)

    async def get(self, name: str) -> StoredTemplate | None:
        now = time.monotonic()
        cached = self._cache.get(name)
        if cached is not None and now - cached[0] < RECHECK_S:
            return cached[1]
        latest = await self._newer(name, cached[1] if cached else None)
        if latest is not None:
            self._cache[name] = (now, latest)
        return latest

    async def put(self, name: str, text: str, html: str | None) -> tuple[StoredTemplate, bool]:
        """Store a new version unless the latest has the same content: (latest, created)."""
        parse_template(name, text, html)  # a syntax error is the client's: before storing
        async with self._lock:
            cached = self._cache.get(name)
            latest = await self._newer(name, cached[1] if cached else None)
            if latest is not None and (latest.text, latest.html) == (text, html):
                return latest, False
            version = latest.version if latest else 0
            blob = json.dumps({"text": text, "html": html, "created_at": time.time()}).encode()
            while True:
                version += 1
                await self.queue.put_blob(self.key(name, version), blob)
                # another process may have taken this version first: then its content is
                # there, and ours goes to the next one
                if await self.queue.get_blob(self.key(name, version)) == blob:
                    break
            stored = self._load(name, version, blob)
            self._cache[name] = (time.monotonic(), stored)
            return stored, True
