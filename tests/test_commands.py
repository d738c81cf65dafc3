"""The library sides of ``check`` and ``energy`` return values and print nothing; the CLI renders
them."""

from __future__ import annotations

import dataclasses

import pytest

from slamp_deploy.chips.verdict import FitReport
from slamp_deploy.config import PipelineConfig
from slamp_deploy.pipeline.check import check_model
from slamp_deploy.pipeline.energy import compare_energy


def test_check_model_returns_the_verdict_and_prints_nothing(capsys) -> None:
    rep = check_model(PipelineConfig(target="truenorth"))
    assert isinstance(rep, FitReport) and not rep.fits
    assert any("fan-in 512 > 256" in v.message for v in rep.violations)
    assert capsys.readouterr() == ("", "")


def test_compare_energy_returns_frozen_rows_in_the_order_asked(capsys) -> None:
    cmp = compare_energy(PipelineConfig(), ["truenorth", "loihi2"])
    assert [r.target for r in cmp.rows] == ["truenorth", "loihi2"]
    assert cmp.activity.samples == 359 and cmp.reference.ann_j > 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        cmp.rows[0].target = "x"  # type: ignore[misc]
    assert capsys.readouterr() == ("", "")
