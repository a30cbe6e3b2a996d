"""Display names in address-header templates: quoted when rendered, so a value is data.

Pure functions; the template compiler (render.py) rewrites address headers with them.
"""

from __future__ import annotations

import re

# A variable right before ``<addr>`` in an address header is a display name: its value
# is data, so a comma in it ("Smith, John") must not split the list, nor may it add a
# recipient ("Eve <eve@example.net>, Bob"). Such expressions get quoted when rendered.
_EXPR = r"\{\{(-?)((?:(?!\}\}).)*?)(-?)\}\}"  # {{ expr }}, {{- expr -}}
_QUOTED_NAME = re.compile(rf'"{_EXPR}"(?=\s*<)', re.DOTALL)
_BARE_NAME = re.compile(rf"{_EXPR}(?=\s*<)", re.DOTALL)
_PHRASE_SPECIALS = frozenset('()<>[]:;@\\,."')


def escape_qcontent(value: object) -> str:
    """The inside of a quoted string: backslashes and quotes escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"')


def quote_phrase(value: object) -> str:
    """A display name, quoted when it holds characters that mean something in an address."""
    text = str(value)
    if _PHRASE_SPECIALS.isdisjoint(text):
        return text
    return f'"{escape_qcontent(text)}"'


def protect_display_names(source: str) -> str:
    """Rewrite an address header's template so display-name expressions are quoted."""
    source = _QUOTED_NAME.sub(r'"{{\1 (\2) | mailspool_qcontent \3}}"', source)
    return _BARE_NAME.sub(r"{{\1 (\2) | mailspool_phrase \3}}", source)
