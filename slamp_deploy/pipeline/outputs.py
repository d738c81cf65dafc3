"""The run's output folder: report.json, report.md, pruned.pt and the other files the stages
produced, written into a temporary folder beside it and swapped in at the end."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch

from slamp_deploy.model.graph import SpikingGraph
from slamp_deploy.report.markdown import render_markdown
from slamp_deploy.report.model import RunReport

__all__ = ["write_outputs"]


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
    state = {k: v.detach().cpu() for k, v in graph.model.state_dict().items()
             if k.rsplit(".", 1)[-1] not in ("mem", "syn")}
    torch.save(state, folder / "pruned.pt")
    for name, data in extra.items():
        dest = folder / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
