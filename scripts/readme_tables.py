"""Write the README's tables that come from the registries (the pruning methods and the targets)
and from measurements (the NIR interop table, from ``tests/interop/results.json``).

``python scripts/readme_tables.py`` rewrites the parts of README.md between the
``<!-- NAME:begin -->`` / ``<!-- NAME:end -->`` markers; ``--check`` only reports whether they are
current (the tests run it), so a newly registered method, family or profile shows up in the README
without anyone typing it in.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def _first_line(obj: object) -> str:
    """The first line of the class docstring, as Markdown that fits in a table cell."""
    line = ((type(obj).__doc__ or "").strip().splitlines() or [""])[0]
    return line.replace("``", "`").replace("|", "\\|")


def methods_table() -> str:
    from slamp_deploy.prune.methods import available_methods, get_method

    rows = ["| method | kind | what it keeps |", "|---|---|---|"]
    for name in available_methods():
        m = get_method(name)
        kind = "per-weight score" if m.kind == "score" else "per-layer density"
        if m.uses_lambdas:
            kind += ", temporal factor"
        rows.append(f"| `{name}` | {kind} | {_first_line(m)} |")
    return "\n".join(rows)


def targets_table() -> str:
    from slamp_deploy.chips import describe_targets, family_of, load_profile

    rows = ["| target | family | exports checked in | chip |", "|---|---|---|---|"]
    for name, line in describe_targets():
        family = family_of(load_profile(name))
        runtimes = ", ".join(("NIR simulator", "onnxruntime",
                              *(s.capitalize() for s in family.simulators)))
        rows.append(f"| `{name}` | `{family.name}` | {runtimes} | {line} |")
    return "\n".join(rows)


INTEROP_RESULTS = README.parent / "tests" / "interop" / "results.json"


def _interop_result(row: dict) -> str:
    verdict = row["verdict"]
    if verdict == "approximate":
        verdict += f" ({row['agreement']:.3f} of spike entries agree)"
    if "corrected" in row:
        verdict += "; exact with that departure undone" if row["corrected"]["verdict"] == \
            "exact" else f"; {row['corrected']['verdict']} with it undone"
    return verdict


def interop_table() -> str:
    """Framework x direction x node types, from tests/interop/results.json (measured by
    scripts/interop_results.py, re-measured by tests/interop/test_frameworks.py)."""
    import json

    rows = ["| framework | direction | node types | dt (s) | result | the departure from NIR "
            "(producer's exporter or consumer's importer), or the failure |",
            "|---|---|---|---|---|---|"]
    for r in json.loads(INTEROP_RESULTS.read_text()):
        why = "; ".join(t for t in (r["departure"], r["note"]) if t).replace("|", "\\|")
        rows.append(f"| {r['framework']} | {r['direction']} | {r['nodes']} | {r['dt']:g} | "
                    f"{_interop_result(r)} | {why} |")
    return "\n".join(rows)


TABLES: dict[str, Callable[[], str]] = {"methods": methods_table, "targets": targets_table,
                                        "interop": interop_table}


def render(text: str) -> str:
    """``text`` with every marked table replaced by its current rendering."""
    for name, make in TABLES.items():
        pattern = re.compile(rf"(<!-- {name}:begin -->\n)(?:.*?\n)?(<!-- {name}:end -->)", re.S)
        found = pattern.search(text)
        if found is None:
            raise SystemExit(f"README.md: the markers <!-- {name}:begin/end --> are missing")
        text = text[:found.end(1)] + make() + "\n" + text[found.start(2):]
    return text


def main(argv: list[str]) -> int:
    old = README.read_text()
    new = render(old)
    if "--check" in argv:
        if new != old:
            sys.stderr.write("README.md tables are stale: run python scripts/readme_tables.py\n")
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
