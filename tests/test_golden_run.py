"""The whole report of the built-in run, pinned: report.json (less wall times, the machine and the
output folder) and report.md (less its time-per-stage table) must stay byte-identical."""

from __future__ import annotations

import pytest

from tests.golden.regenerate import GOLDEN, run_outputs


@pytest.mark.slow
@pytest.mark.lava
def test_builtin_run_report_is_byte_identical_to_the_golden(tmp_path) -> None:
    from slamp_deploy.exporters.lava_export import find_lava_python

    if find_lava_python() is None:
        pytest.fail("the golden run includes the Lava section: run make lava-env")
    report_json, report_md = run_outputs(tmp_path / "slamp-out")
    assert report_json == (GOLDEN / "run" / "report.json").read_text(), (
        "report.json changed; if that is intended: python -m tests.golden.regenerate run")
    assert report_md == (GOLDEN / "run" / "report.md").read_text(), (
        "report.md changed; if that is intended: python -m tests.golden.regenerate run")
