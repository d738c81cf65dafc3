"""The typed report: report.json -> RunReport -> report.json is the identity, and report.md
re-rendered from a saved report.json is the run's report.md (less the time-per-stage table,
whose stage order report.json's sorted keys do not keep)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from slamp_deploy.report.markdown import render_markdown
from slamp_deploy.report.model import ReportError, RunReport
from tests.golden.regenerate import GOLDEN


def _without_times(md: str) -> str:
    lines, skipping = [], False
    for line in md.splitlines(keepends=True):
        if line.startswith("## "):
            skipping = line.startswith("## Time per stage")
        if not skipping:
            lines.append(line)
    return "".join(lines)


def _dumps(d: dict[str, Any]) -> str:
    return json.dumps(d, indent=2, sort_keys=True) + "\n"


def test_golden_report_round_trips_and_renders_its_markdown() -> None:
    d = json.loads((GOLDEN / "run" / "report.json").read_text())
    # the golden leaves out what differs between runs; put plausible values back
    d["timings_s"] = {"load": 1.0, "total": 2.0}
    d["environment"] = {"python": "3.11", "torch": "2", "device": "cpu", "threads": 2}
    report = RunReport.from_dict(d)
    assert _dumps(report.to_dict()) == _dumps(d)
    assert _without_times(render_markdown(report)) == (GOLDEN / "run" / "report.md").read_text()
    assert report.fit is not None and report.fit.report.fits
    assert report.energy is not None and report.energy.primary is not None
    assert report.energy.primary.name == "loihi2"


def test_fresh_report_round_trips(tmp_path: Path, tiny_model_file: Path, tiny_weights: Path,
                                  digits_npz: Path) -> None:
    from slamp_deploy.config import PipelineConfig
    from slamp_deploy.pipeline.run import run

    result = run(PipelineConfig(target="loihi", model=f"{tiny_model_file}:build",
                                weights=str(tiny_weights), data=str(digits_npz), timesteps=4,
                                epochs=0, calib_samples=64, lava=False,
                                out=str(tmp_path / "o")))
    text = (result.out_dir / "report.json").read_text()
    back = RunReport.from_dict(json.loads(text))
    assert _dumps(back.to_dict()) == text
    md = (result.out_dir / "report.md").read_text()
    assert _without_times(render_markdown(back)) == _without_times(md)
    assert render_markdown(result.report) == md
    # Loihi's neuron update figure is the integer 81: it must not come back as "81.0"
    assert "81 pJ" in md and "81.0 pJ" not in md


def test_other_schema_versions_are_refused() -> None:
    d = json.loads((GOLDEN / "run" / "report.json").read_text())
    d["schema_version"] = 2
    with pytest.raises(ReportError, match="version 1 only"):
        RunReport.from_dict(d)
