"""Measure the NIR interop table again and write ``tests/interop/results.json``.

``python scripts/interop_results.py`` runs ``tests/interop/harness.measure`` (norse, sinabs,
rockpool, spyx and snnTorch in ``.venv-interop``; about a minute) and writes every row; then
``python scripts/readme_tables.py`` renders the README's interop table from that file. The
test ``tests/interop/test_frameworks.py`` measures the rows again and compares, so the file,
and the table generated from it, cannot drift from what the frameworks do.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.interop import harness


def main() -> int:
    if harness.interop_python() is None:
        sys.stderr.write("no .venv-interop: run `make interop-env` first\n")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        rows = harness.measure(Path(tmp))
    harness.write_results(rows)
    print(f"wrote {harness.RESULTS} ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
