"""The shell examples of the documentation that run, and what they are to print
(docs/testing.md, "Examples that run").

A runnable example is a fenced block whose info string is ``sh runnable``, or
``sh runnable exit=N`` when the last command is to exit N. A fenced ``text output`` block
right after it (blank lines between at most) holds lines its output must show: each line
appears in some line of the output (stdout or stderr), ``...`` standing for any text.
The examples of one document run in order in one directory, as a reader would run them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_FENCE = re.compile(r"^```(.*)$")
#: the info strings a fenced block of a document may have about running: a typo in the
#: marker must not leave an example unrun without a word
RUNNABLE = "runnable"
OUTPUT = "output"


@dataclass(frozen=True)
class Block:
    """A fenced block: the line of its opening fence (1-based), its info string's words,
    its lines, and the line after its closing fence."""

    line: int
    info: tuple[str, ...]
    body: tuple[str, ...]
    end: int


@dataclass(frozen=True)
class Example:
    """A runnable example of ``doc``: its script, the exit status it is to end with and
    the lines its output is to show."""

    doc: Path
    line: int
    script: str
    exit: int
    expected: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.doc.name}:{self.line}"


def blocks(text: str) -> list[Block]:
    """The fenced blocks of a Markdown text (fences at the start of a line)."""
    lines = text.splitlines()
    found, i = [], 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        found.append(Block(i + 1, tuple(opening.group(1).split()), tuple(lines[i + 1 : j]), j + 2))
        i = j + 1
    return found


def marker_errors(doc: Path) -> list[str]:
    """Fenced blocks whose info string asks for a run or an output in words this module
    does not take (``sh runable``, ``text ouptut``, ``exit=x``)."""
    errors = []
    for b in blocks(doc.read_text(encoding="utf-8")):
        words = set(b.info[1:])
        if not words:
            continue
        if b.info[0] == "sh":
            extra = {w for w in words if w != RUNNABLE and not re.fullmatch(r"exit=\d+", w)}
        elif b.info[0] == "text":
            extra = words - {OUTPUT}
        else:
            continue
        if extra or (b.info[0] == "sh" and RUNNABLE not in words):
            errors.append(f"{doc.name}:{b.line}: ```{' '.join(b.info)}")
    return errors


def examples(doc: Path) -> list[Example]:
    text = doc.read_text(encoding="utf-8")
    lines = text.splitlines()
    found = blocks(text)
    out = []
    for k, b in enumerate(found):
        if b.info[:1] != ("sh",) or RUNNABLE not in b.info:
            continue
        status = next((int(w[5:]) for w in b.info if w.startswith("exit=")), 0)
        expected: tuple[str, ...] = ()
        after = found[k + 1] if k + 1 < len(found) else None
        if (
            after is not None
            and after.info == ("text", OUTPUT)
            and not any(line.strip() for line in lines[b.end - 1 : after.line - 1])
        ):
            expected = tuple(line.strip() for line in after.body if line.strip())
        out.append(Example(doc, b.line, "\n".join(b.body) + "\n", status, expected))
    return out


def pattern(expected: str) -> re.Pattern[str]:
    """An expected line as a pattern: ``...`` is any text."""
    return re.compile(".*".join(map(re.escape, expected.split("..."))))


def not_shown(expected: tuple[str, ...], output: str) -> list[str]:
    """The expected lines that no line of ``output`` shows."""
    shown = [line.strip() for line in output.splitlines()]
    return [e for e in expected if not any(pattern(e).search(line) for line in shown)]
