"""The command examples of README.md and docs/*.md marked runnable run as they stand and
print what the documentation shows (tests/support/doc_examples.py has the marker).

The examples of one document run in order, in one directory of their own holding the
files of examples/, with ``mailspool`` on the PATH and ``MAILSPOOL_SMTP`` naming a
recording SMTP server that refuses ``nobody@example.com`` as a relay refuses an unknown
mailbox (550 5.1.1), so that the examples can show a dead letter. Also: the closing line
of ``make demo`` names the folder its messages are written to."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mailspool.testing import RecordingSMTPServer
from tests.support.doc_examples import Example, examples, marker_errors, not_shown
from tests.support.paths import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLES = [e for doc in DOCS for e in examples(doc)]
REFUSED = "nobody@example.com"


@dataclass
class Session:
    """A document's examples run so far, in its own directory."""

    workdir: Path
    env: dict[str, str]
    done: list[Example] = field(default_factory=list)
    failed: Example | None = None

    def run(self, example: Example) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", example.script],
            cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip


@pytest.fixture(scope="module")
def relay() -> Iterator[RecordingSMTPServer]:
    with RecordingSMTPServer() as server:
        server.handler.rcpt_replies[REFUSED] = f"550 5.1.1 <{REFUSED}>: no such user"
        yield server


@pytest.fixture(scope="module")
def sessions(
    tmp_path_factory: pytest.TempPathFactory, relay: RecordingSMTPServer
) -> dict[Path, Session]:
    bin_dir = tmp_path_factory.mktemp("bin")
    # the reader's `mailspool`: this checkout's, run by this interpreter
    shim = bin_dir / "mailspool"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m mailspool "$@"\n')
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSPOOL_")}
    env |= {
        "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}",
        "MAILSPOOL_SMTP": f"smtp://127.0.0.1:{relay.port}",
    }
    found = {}
    for doc in DOCS:
        workdir = tmp_path_factory.mktemp(doc.stem)
        for example_file in (ROOT / "examples").iterdir():
            shutil.copy(example_file, workdir)
        found[doc] = Session(workdir, env)
    return found


def test_the_markers_are_spelled_right() -> None:
    errors = [e for doc in DOCS for e in marker_errors(doc)]
    assert not errors, f"not a runnable example nor its output: {errors}"


def test_the_quick_start_and_the_command_line_reference_run() -> None:
    by_doc = {doc.name: sum(e.doc == doc for e in EXAMPLES) for doc in DOCS}
    assert by_doc["README.md"] >= 4 and by_doc["cli.md"] >= 10, by_doc


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.name)
def test_the_example_runs_and_shows_what_the_doc_says(
    example: Example, sessions: dict[Path, Session]
) -> None:
    session = sessions[example.doc]
    # the examples before it in its document first, as a reader runs them
    for earlier in [e for e in EXAMPLES if e.doc == example.doc and e.line <= example.line]:
        if session.failed is not None:
            pytest.fail(f"an earlier example failed: {session.failed.name}")
        if earlier in session.done:
            continue
        ran = session.run(earlier)
        output = ran.stdout + ran.stderr
        wrong = (
            f"exit {ran.returncode}, the doc says {earlier.exit}"
            if ran.returncode != earlier.exit
            else "\n".join(f"not shown: {line}" for line in not_shown(earlier.expected, output))
        )
        if wrong:
            session.failed = earlier
            pytest.fail(f"{earlier.name}:\n{earlier.script}\n{wrong}\n--- output:\n{output}")
        session.done.append(earlier)


def test_make_demo_names_the_folder_it_writes_to(tmp_path: Path) -> None:
    recipe = (ROOT / "Makefile").read_text().split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    command = re.search(r"mailspool send (.*?);", recipe.replace("\\\n", " "), re.S)
    said = re.search(r"messages are in (\S+?)/? ", recipe)
    assert command is not None and said is not None, recipe
    demo = tmp_path / "demo"
    demo.mkdir()
    args = command.group(1).replace("../examples/", f"{ROOT}/examples/").split()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSPOOL_")}
    done = subprocess.run(
        [sys.executable, "-m", "mailspool", "send", *args], cwd=demo, env=env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    folder = tmp_path / said.group(1)
    assert len(list(folder.glob("*.eml"))) == 106, sorted(p.name for p in demo.rglob("*"))
