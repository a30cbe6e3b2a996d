"""How a queue that stores messages compressed packs them.

A message is a few KB of mostly repeated text (the template); deflated it is a tenth of
that, so the embedded queue writes a tenth of the bytes. The producer's render processes
pack each message as they build it, in parallel, and hand the queue a :class:`Packed`.
"""

from __future__ import annotations

import zlib


class Packed(bytes):
    """A message already packed: a queue that packs messages stores it as it is."""


def pack(message: bytes) -> bytes:
    """Raw deflate at level 1. A small hash table (memLevel 5) makes a compressor cheap
    to set up, which is most of the cost for a few KB."""
    c = zlib.compressobj(1, zlib.DEFLATED, -15, 5)
    return c.compress(message) + c.flush()


def unpack(stored: bytes) -> bytes:
    return zlib.decompress(stored, -15)


def packed(message: bytes) -> bytes:
    """What a packing queue stores for ``message``."""
    return message if isinstance(message, Packed) else pack(message)
