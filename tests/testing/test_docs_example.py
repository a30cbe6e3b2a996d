"""The example in docs/testing.md runs as it stands, as a user's own test would."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_documented_example_passes(tmp_path: Path) -> None:
    doc = (ROOT / "docs" / "testing.md").read_text()
    [example] = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    (tmp_path / "test_example.py").write_text(example)
    # the user's PATH finds this install's mailspool, as it would in their venv
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_example.py"],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
