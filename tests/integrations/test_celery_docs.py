"""docs/integrations/celery.md cannot rot: its ```python blocks run, in order, in one namespace.

tests/test_docs.py runs the blocks of the top-level pages only; this page's blocks run
here the same way (a fresh interpreter, warnings as errors, no GAMEBALL_/GBTRACK_
variables of the caller's environment).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("celery")

PAGE = Path(__file__).resolve().parents[2] / "docs" / "integrations" / "celery.md"

RUNNER = """
import json, sys
namespace = {"__name__": "__main__"}
for line, code in json.loads(sys.stdin.read()):
    exec(compile(code, f"celery.md:{line}", "exec"), namespace)
"""


def _python_blocks(text: str) -> list[tuple[int, str]]:
    blocks = []
    for match in re.finditer(r"^```python\n(.*?)^```$", text, re.M | re.S):
        blocks.append((text.count("\n", 0, match.start()) + 2, match.group(1)))
    return blocks


def test_the_celery_page_runs(tmp_path: Path) -> None:
    blocks = _python_blocks(PAGE.read_text())
    assert len(blocks) >= 3
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GAMEBALL_", "GBTRACK_"))}
    env["PYTHONWARNINGS"] = "error,default:gbtrack:RuntimeWarning"
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=json.dumps(blocks),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
