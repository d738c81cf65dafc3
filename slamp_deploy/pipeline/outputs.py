"""The run's output folder: report.json, report.md, pruned.pt and the other files the stages
produced, written into a temporary folder beside it and swapped in at the end.

The swap replaces ``--out`` whole, so :func:`check_out_dir` refuses, before any work starts, an
``--out`` that is not ours to replace: a file, the working folder or one above it, or a folder
holding anything but an earlier slamp-deploy output (recognised by the marker file every output
carries, or, for outputs older than the marker, by its report.json).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch

from slamp_deploy.errors import UsageError
from slamp_deploy.model.graph import SpikingGraph
from slamp_deploy.report.markdown import render_markdown
from slamp_deploy.report.model import SCHEMA, RunReport

__all__ = ["MARKER", "check_out_dir", "write_outputs"]

#: written into every output folder, so a later run knows the folder is one it may replace
MARKER = ".slamp-deploy-output"


def check_out_dir(out: str) -> None:
    """Refuse an ``--out`` the run must not replace; call it before any work starts.

    Raises:
        UsageError: ``out`` is empty, a file, the working folder or above it, sits under a file,
            or is a folder holding files slamp-deploy did not write.
    """
    if not out.strip():
        raise UsageError("--out '': name a folder for the outputs (default slamp-out)")
    path = Path(out).expanduser().resolve()
    cwd = Path.cwd().resolve()
    if path == cwd or path in cwd.parents:
        raise UsageError(f"--out {out}: is the working folder (or above it), which the run would "
                         f"replace whole; name a new folder, e.g. --out slamp-out")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise UsageError(f"--out {out}: {parent} is a file, so no folder can be made under it; "
                         f"choose another --out")
    if not path.exists():
        return
    if not path.is_dir():
        raise UsageError(f"--out {out}: is a file, not a folder; choose another --out (the run "
                         f"would replace it)")
    if not _is_ours(path):
        names = sorted(p.name for p in path.iterdir())[:3]
        raise UsageError(f"--out {out}: the folder holds files slamp-deploy did not write "
                         f"({', '.join(names)}); choose another folder or empty it")


def _is_ours(folder: Path) -> bool:
    """Empty, or an earlier slamp-deploy output (the marker, or an older output's report.json)."""
    if (folder / MARKER).is_file() or not any(folder.iterdir()):
        return True
    try:
        return json.loads((folder / "report.json").read_text()).get("schema") == SCHEMA
    except (OSError, ValueError, AttributeError):
        return False


def write_outputs(out: Path, report: RunReport, graph: SpikingGraph,
                  extra: Mapping[str, bytes] | None = None) -> Path:
    """Write report.json, report.md and pruned.pt into ``out``, replacing it atomically.

    Everything is written into a temporary folder beside ``out`` and moved into place at the
    end, so a failure leaves an earlier ``out`` untouched. (``exporters._atomic`` replaces one
    file; here the unit is the folder, so the swap is done by two renames.)
    """
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        _write_into(tmp, report, graph, extra or {})
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_into(folder: Path, report: RunReport, graph: SpikingGraph,
                extra: Mapping[str, bytes]) -> None:
    (folder / "report.json").write_text(json.dumps(report.to_dict(), indent=2, sort_keys=True)
                                        + "\n")
    (folder / "report.md").write_text(render_markdown(report))
    (folder / MARKER).write_text("This folder is a slamp-deploy output: a later run with the same "
                                 "--out replaces it whole.\n")
    state = {k: v.detach().cpu() for k, v in graph.model.state_dict().items()
             if k.rsplit(".", 1)[-1] not in ("mem", "syn")}
    torch.save(state, folder / "pruned.pt")
    for name, data in extra.items():
        dest = folder / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
