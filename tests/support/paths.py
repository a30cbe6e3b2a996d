"""Where things are in the checkout."""

from __future__ import annotations

from pathlib import Path

#: the root of the checkout (tests/support/ is two levels down)
ROOT = Path(__file__).resolve().parents[2]
