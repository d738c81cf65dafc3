"""The README's registry tables (pruning methods, targets) are the registries' current content."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_tables_are_current() -> None:
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "readme_tables.py"), "--check"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr

