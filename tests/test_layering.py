"""The shape of the code, enforced: import-linter's layer and Lava-interpreter contracts hold on
this tree, and a planted violation of each is caught (so the check is not vacuous)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "lint-imports.sh"


def _lint(src: Path) -> subprocess.CompletedProcess[str]:
    venv = Path(sys.executable).parent.parent
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "VENV": str(venv), "SLAMP_SRC": str(src)})


def _copy(tmp_path: Path) -> Path:
    for sub in ("slamp_deploy", "exporters", "examples"):
        shutil.copytree(ROOT / sub, tmp_path / sub,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pt"))
    return tmp_path


def test_contracts_hold() -> None:
    res = _lint(ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 kept, 0 broken" in res.stdout


@pytest.mark.parametrize(("module", "planted", "contract"), [
    ("slamp_deploy/errors.py", "import slamp_deploy.cli\n", "layers"),
    ("slamp_deploy/prune/__init__.py", "import slamp_deploy.fit\n", "layers"),
    ("exporters/nir_sim.py", "import torch\n", "Lava interpreter"),
])
def test_a_planted_violation_is_caught(tmp_path: Path, module: str, planted: str,
                                       contract: str) -> None:
    src = _copy(tmp_path)
    path = src / module
    path.write_text(path.read_text() + planted)
    res = _lint(src)
    assert res.returncode != 0
    assert "BROKEN" in res.stdout and contract in res.stdout, res.stdout


MAX_FUNCTION_LINES = 80


def test_no_function_is_longer_than_the_house_limit() -> None:
    """Every function in the package, the exporters, benchmarks, examples and scripts stays
    under about 80 lines (ruff's C901 holds the complexity to 15)."""
    long = []
    for folder in ("slamp_deploy", "exporters", "benchmarks", "examples", "scripts"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    n = node.end_lineno - node.lineno + 1
                    if n > MAX_FUNCTION_LINES:
                        long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n})")
    assert not long, long
